"""Volume readers: NIfTI, MetaImage and DICOM series round trips through MONAI LoadImage."""

import os

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data import readers
from genesis_monai.data.readers import MissingReaderError, VolumeReadError, list_volumes, read_volume


def _nifti(path, array, spacing=(0.7, 0.7, 2.5)):
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return str(path)


def _volume(shape=(20, 18, 12), seed=0):
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


def test_nifti_round_trip_axes_values_spacing(tmp_path):
    vol = _volume()
    path = _nifti(tmp_path / "ct.nii.gz", vol)
    arr, meta = read_volume(path)
    assert arr.shape == (20, 18, 12) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, vol.astype(np.float32))
    np.testing.assert_allclose(meta["spacing"], (0.7, 0.7, 2.5), rtol=1e-5)
    assert meta["reader"] == "NibabelReader"


def test_nifti_trailing_singleton_and_non_3d(tmp_path):
    vol = _volume()
    arr, _ = read_volume(_nifti(tmp_path / "four.nii", vol[..., None]))
    assert arr.shape == (20, 18, 12)
    with pytest.raises(VolumeReadError, match=r"expected a 3D volume.*\(20, 18\)"):
        read_volume(_nifti(tmp_path / "flat.nii.gz", vol[:, :, 0]))
    with pytest.raises(VolumeReadError, match=r"expected a 3D volume"):
        read_volume(_nifti(tmp_path / "time.nii.gz", np.stack([vol, vol], -1)))


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(VolumeReadError, match="broken.nii.gz"):
        read_volume(str(bad))
    with pytest.raises(VolumeReadError, match="not a volume"):
        read_volume(str(tmp_path / "notes.txt"))


def test_resampling_to_a_target_spacing(tmp_path):
    vol = np.zeros((20, 20, 10), np.int16)
    vol[5:15, 5:15, 2:8] = 500
    path = _nifti(tmp_path / "ct.nii.gz", vol, spacing=(1.0, 1.0, 2.0))
    arr, meta = read_volume(path, spacing=(2.0, 2.0, 1.0))
    assert arr.shape == (10, 10, 19)  # MONAI Spacing: extent / new spacing (corner-aligned)
    assert meta["spacing"] == (2.0, 2.0, 1.0)
    assert arr.max() == pytest.approx(500, abs=1)


def _write_dicom_series(folder, n=4, shuffle_names=True):
    """A DICOM series from pydicom's CT_small.dcm test slice: slice k = pixels + 10 k, stacked along z."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = src.pixel_array.astype(np.int16)
    os.makedirs(folder, exist_ok=True)
    series = generate_uid()
    hu = []
    for k in range(n):
        ds = src.copy()
        stored = (base + 10 * k).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = k + 1
        pos = [float(v) for v in src.ImagePositionPatient]
        pos[2] += 5.0 * k
        ds.ImagePositionPatient = pos
        ds.SliceLocation = pos[2]
        name = f"im{(n - 1 - k) if shuffle_names else k:03d}.dcm"  # names in reverse order of position
        ds.save_as(os.path.join(folder, name))
        hu.append(stored.astype(np.float32) * float(src.RescaleSlope) + float(src.RescaleIntercept))
    # reference axis order: (x, y, z) = (column, row, slice)
    return np.stack([h.T for h in hu], axis=-1)


@pytest.mark.parametrize("reader", ["pydicom", "itk"])
def test_dicom_series_round_trip(tmp_path, reader):
    pytest.importorskip(reader)
    expected = _write_dicom_series(str(tmp_path / "series"))
    arr, meta = read_volume(str(tmp_path / "series"), dicom_reader=reader)
    assert arr.shape == (128, 128, 4)
    np.testing.assert_array_equal(arr, expected)  # HU (rescale applied), x/y/z order, z sorted by position
    assert meta["reader"] == {"pydicom": "PydicomReader", "itk": "ITKReader"}[reader]


def test_metaimage_round_trip(tmp_path):
    itk = pytest.importorskip("itk")
    vol = _volume((16, 14, 10))
    image = itk.image_from_array(np.ascontiguousarray(vol.transpose(2, 1, 0)))  # itk arrays are (z, y, x)
    image.SetSpacing((0.8, 0.8, 2.0))
    itk.imwrite(image, str(tmp_path / "ct.mhd"))
    arr, meta = read_volume(str(tmp_path / "ct.mhd"))
    np.testing.assert_array_equal(arr, vol.astype(np.float32))
    np.testing.assert_allclose(meta["spacing"], (0.8, 0.8, 2.0), rtol=1e-5)


def test_missing_optional_package_is_named(tmp_path, monkeypatch):
    real = readers._installed
    monkeypatch.setattr(readers, "_installed", lambda pkg: False if pkg in ("itk", "pydicom") else real(pkg))
    with pytest.raises(MissingReaderError, match="'itk'"):
        readers.reader_name_for(str(tmp_path / "scan.mhd"))
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "a.dcm").write_bytes(b"x")
    with pytest.raises(MissingReaderError, match="'itk' or 'pydicom'"):
        readers.reader_name_for(str(tmp_path / "series"))
    monkeypatch.setattr(readers, "_installed", lambda pkg: pkg == "pydicom")
    assert readers.reader_name_for(str(tmp_path / "series")) == "PydicomReader"


def test_list_volumes(tmp_path):
    _nifti(tmp_path / "a.nii.gz", _volume())
    _nifti(tmp_path / "sub" / "b.nii", _volume()) if (tmp_path / "sub").mkdir() is None else None
    (tmp_path / "c.mhd").write_text("header")
    (tmp_path / "c.raw").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("not a volume")
    (tmp_path / "labelsTr").mkdir()
    _nifti(tmp_path / "labelsTr" / "a.nii.gz", _volume())
    (tmp_path / "out").mkdir()
    _nifti(tmp_path / "out" / "x.nii.gz", _volume())
    dcm = tmp_path / "patient" / "series1"
    dcm.mkdir(parents=True)
    (dcm / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)  # extension-less DICOM
    found = list_volumes(str(tmp_path), exclude=[str(tmp_path / "out")])
    rel = [os.path.relpath(p, tmp_path) for p in found]
    assert rel == sorted(["a.nii.gz", "c.mhd", os.path.join("patient", "series1"), os.path.join("sub", "b.nii")])


def test_list_volumes_of_the_folder_only_and_has_volumes(tmp_path):
    _nifti(tmp_path / "a.nii.gz", _volume())
    (tmp_path / "sub").mkdir()
    _nifti(tmp_path / "sub" / "b.nii", _volume())
    series = tmp_path / "series"
    series.mkdir()
    (series / "x.dcm").write_bytes(b"x")
    deep = tmp_path / "sub" / "deep_series"
    deep.mkdir()
    (deep / "y.dcm").write_bytes(b"y")
    assert list_volumes(str(tmp_path), recursive=False) == [str(tmp_path / "a.nii.gz"), str(series)]
    assert readers.has_volumes(str(tmp_path))
    assert not readers.has_volumes(str(tmp_path / "sub"), exclude=[str(tmp_path / "sub")])
    (tmp_path / "labels_only" / "labelsTr").mkdir(parents=True)
    _nifti(tmp_path / "labels_only" / "labelsTr" / "l.nii.gz", _volume())
    assert not readers.has_volumes(str(tmp_path / "labels_only"))


def test_header_without_voxels(tmp_path):
    path = _nifti(tmp_path / "ct.nii.gz", _volume((20, 18, 12))[..., None])  # trailing singleton dropped
    header = readers.read_volume_header(path)
    assert header.shape == (20, 18, 12) and header.reader == "NibabelReader"
    np.testing.assert_allclose(header.spacing, (0.7, 0.7, 2.5), rtol=1e-6)
    (tmp_path / "broken.nii.gz").write_bytes(b"garbage")
    with pytest.raises(VolumeReadError, match="broken.nii.gz: cannot be read with NibabelReader"):
        readers.read_volume_header(str(tmp_path / "broken.nii.gz"))
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "a.dcm").write_bytes(b"x")
    if readers._installed("itk") or readers._installed("pydicom"):
        assert readers.read_volume_header(str(tmp_path / "series")) is None  # a series: not known cheaply


def test_metaimage_header(tmp_path):
    itk = pytest.importorskip("itk")
    image = itk.image_from_array(np.zeros((10, 14, 16), np.int16))  # itk arrays are (z, y, x)
    image.SetSpacing((0.8, 0.7, 2.0))
    itk.imwrite(image, str(tmp_path / "ct.mhd"))
    header = readers.read_volume_header(str(tmp_path / "ct.mhd"))
    assert header.shape == (16, 14, 10) and header.reader == "ITKReader"
    np.testing.assert_allclose(header.spacing, (0.8, 0.7, 2.0), rtol=1e-6)
    (tmp_path / "bad.mhd").write_text("garbage")
    with pytest.raises(VolumeReadError, match="bad.mhd: cannot be read with ITKReader"):
        readers.read_volume_header(str(tmp_path / "bad.mhd"))
