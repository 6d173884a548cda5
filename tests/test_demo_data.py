"""The procedural chest-CT demo data set: content, determinism, files on disk, resumability, CLI."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from genesis_monai.data.demo import demo_data_dir, demo_split, make_demo_volume, write_demo_dataset
from genesis_monai.io_utils import PARTIAL_SUFFIX

# a 320 mm chest at half the default resolution: 8x fewer voxels than the default volumes
SMALL = dict(shape=(64, 64, 32), spacing=(5.0, 5.0, 10.0))


@pytest.fixture(scope="module")
def default_volume():
    return make_demo_volume(0, return_masks=True)  # default shape and spacing


def test_default_volume_types_and_shape(default_volume):
    image, label, _ = default_volume
    assert image.shape == label.shape == (128, 128, 64)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1}


def test_hu_ranges_per_structure(default_volume):
    image, label, masks = default_volume
    body, lungs, bone = masks["body"], masks["lungs"], masks["bone"]
    outside = ~ndimage.binary_dilation(body, iterations=2)
    assert abs(float(image[outside].mean()) + 1000.0) < 5.0  # air, noise averages out
    assert float(np.percentile(image[outside], 99)) < -930.0
    parenchyma = lungs & ~masks["vessels"] & ~masks["airways"] & (label == 0)
    assert float(image[parenchyma].mean()) < -700.0
    assert float(image[lungs].mean()) < -500.0
    assert lungs.sum() > 0.15 * body.sum()  # the lungs fill a good part of the chest
    assert float(image[bone].mean()) > 300.0 and (image[bone] > 600).sum() > 1000
    soft = body & ~lungs & ~bone & ~ndimage.binary_dilation(lungs | bone | ~body, iterations=2)
    assert -150.0 < float(np.median(image[soft])) < 80.0  # fat and soft tissue
    assert (image[masks["airways"] & lungs] < -600).mean() > 0.5
    nodules = image[label > 0].astype(float)
    assert -300.0 < nodules.mean() < 100.0  # dense, blurred at the edges


def test_nodule_and_vessel_intensities_overlap(default_volume):
    image, label, masks = default_volume
    in_plane = np.zeros((3, 3, 1), bool)
    in_plane[1, :, 0] = in_plane[:, 1, 0] = True
    core = ndimage.binary_erosion(label > 0, in_plane)
    vessel_core = ndimage.binary_erosion(masks["vessels"], in_plane)
    assert core.sum() >= 5 and vessel_core.sum() >= 20
    # the same intensity band: a threshold cannot tell a nodule from a vessel
    assert abs(float(np.median(image[core])) - float(np.median(image[vessel_core]))) < 80.0


@pytest.mark.parametrize("index", range(6))
def test_labels_are_1_to_4_nodules_inside_the_lungs(index):
    image, label, masks = make_demo_volume(index, **SMALL, return_masks=True)
    assert label.any()
    _, n = ndimage.label(label)
    assert 1 <= n <= 4
    assert np.all(masks["lungs"][label > 0])
    assert np.all(masks["body"][label > 0])


def test_nodule_sizes_in_voxels(default_volume):
    _, label, _ = default_volume
    comps, n = ndimage.label(label)
    for k in range(1, n + 1):
        xs, ys, zs = np.nonzero(comps == k)
        extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
        assert 3 <= extent <= 20  # radius about 2-8 voxels in-plane at 2.5 mm


def test_same_seed_same_arrays_other_seed_differs():
    a_img, a_lab = make_demo_volume(1, **SMALL, seed=3)
    b_img, b_lab = make_demo_volume(1, **SMALL, seed=3)
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    c_img, c_lab = make_demo_volume(1, **SMALL, seed=4)
    assert not np.array_equal(a_img, c_img)
    d_img, _ = make_demo_volume(2, **SMALL, seed=3)
    assert not np.array_equal(a_img, d_img)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_volumes"):
        write_demo_dataset(str(tmp_path), n_volumes=2, **SMALL)
    with pytest.raises(ValueError, match="shape"):
        make_demo_volume(0, shape=(16, 16, 8))
    with pytest.raises(ValueError, match="spacing"):
        make_demo_volume(0, spacing=(2.5, -1.0, 5.0))
    with pytest.raises(ValueError, match="index"):
        make_demo_volume(-1)


@pytest.mark.parametrize("n, expected", [(3, (1, 1, 1)), (4, (2, 1, 1)), (12, (8, 2, 2)), (20, (14, 3, 3))])
def test_split_sizes(n, expected):
    split = demo_split(n)
    assert tuple(len(split[k]) for k in ("training", "validation", "test")) == expected
    assert sorted(split["training"] + split["validation"] + split["test"]) == list(range(n))


def _all_files(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo"))
    path = write_demo_dataset(out, n_volumes=3, seed=0, **SMALL)
    return out, path


def test_files_layout_and_nifti_geometry(written):
    out, path = written
    assert path == os.path.join(out, "dataset.json")
    content = json.load(open(path))
    assert content["modality"] == {"0": "CT"}
    assert content["labels"] == {"0": "background", "1": "nodule"}
    assert content["numTraining"] == len(content["training"]) == 1
    for i in range(3):
        img = nib.load(os.path.join(out, "imagesTr", f"demo_{i:03d}.nii.gz"))
        lab = nib.load(os.path.join(out, "labelsTr", f"demo_{i:03d}.nii.gz"))
        for vol in (img, lab):
            assert vol.shape == SMALL["shape"]
            np.testing.assert_allclose(vol.header.get_zooms(), SMALL["spacing"])
            np.testing.assert_allclose(np.diag(vol.affine)[:3], SMALL["spacing"])
            assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        ref_img, ref_lab = make_demo_volume(i, seed=0, **SMALL)
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), ref_img)
        np.testing.assert_array_equal(np.asanyarray(lab.dataobj), ref_lab)
    assert not [f for f in os.listdir(os.path.join(out, "imagesTr")) if f.endswith((".tmp", PARTIAL_SUFFIX))]


def test_datalist_paths_exist_and_splits_are_disjoint(written):
    out, path = written
    from genesis_monai.data.datalist import segmentation_datalist  # what the bundles read it with

    seen = []
    for key in ("training", "validation", "test"):
        items = segmentation_datalist(out, key)
        assert items, key
        for item in items:
            assert os.path.isfile(item["image"]) and os.path.isfile(item["label"])
            assert os.path.dirname(item["image"]) == os.path.join(out, "imagesTr")
            seen.append(item["image"])
    assert len(seen) == len(set(seen)) == 3
    raw = json.load(open(path))
    assert not any(os.path.isabs(e["image"]) for e in raw["training"])  # relative paths


def test_rerun_without_overwrite_writes_nothing(written):
    out, path = written
    before = _all_files(out)
    assert write_demo_dataset(out, n_volumes=3, seed=0, **SMALL) == path
    assert _all_files(out) == before


def test_same_seed_same_bytes_on_disk(written, tmp_path):
    out, _ = written
    write_demo_dataset(str(tmp_path), n_volumes=3, seed=0, **SMALL)
    for sub in ("imagesTr", "labelsTr"):
        for name in os.listdir(os.path.join(out, sub)):
            with open(os.path.join(out, sub, name), "rb") as a, open(os.path.join(tmp_path, sub, name), "rb") as b:
                assert a.read() == b.read(), name


def test_overwrite_resume_and_parameter_change(tmp_path):
    out = str(tmp_path)
    write_demo_dataset(out, n_volumes=4, seed=1, **SMALL)
    first = _all_files(out)
    # overwrite rewrites every file (new inodes from the atomic rename)
    write_demo_dataset(out, n_volumes=4, seed=1, overwrite=True, **SMALL)
    again = _all_files(out)
    assert all(again[k][0] != first[k][0] for k in first if k.endswith(".nii.gz"))
    # an interrupted run (datalist and one volume missing) resumes: finished files are kept
    os.remove(os.path.join(out, "dataset.json"))
    os.remove(os.path.join(out, "imagesTr", "demo_002.nii.gz"))
    write_demo_dataset(out, n_volumes=4, seed=1, **SMALL)
    resumed = _all_files(out)
    assert resumed["imagesTr/demo_000.nii.gz"] == again["imagesTr/demo_000.nii.gz"]
    assert os.path.isfile(os.path.join(out, "imagesTr", "demo_002.nii.gz"))
    assert os.path.isfile(os.path.join(out, "dataset.json"))
    # other parameters: regenerated, surplus volumes removed
    write_demo_dataset(out, n_volumes=3, seed=2, **SMALL)
    assert sorted(os.listdir(os.path.join(out, "imagesTr"))) == [f"demo_{i:03d}.nii.gz" for i in range(3)]
    assert json.load(open(os.path.join(out, "dataset.json")))["genesis_demo"]["params"]["seed"] == 2
    img, _ = make_demo_volume(0, seed=2, **SMALL)
    np.testing.assert_array_equal(np.asanyarray(nib.load(os.path.join(out, "imagesTr", "demo_000.nii.gz")).dataobj), img)


def test_foreign_datalist_is_not_replaced(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"training": []}))
    with pytest.raises(FileExistsError, match="dataset.json"):
        write_demo_dataset(str(tmp_path), n_volumes=3, **SMALL)
    assert json.loads((tmp_path / "dataset.json").read_text()) == {"training": []}


def test_demo_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GENESIS_MONAI_DATA", str(tmp_path / "here"))
    assert demo_data_dir() == str(tmp_path / "here")
    monkeypatch.delenv("GENESIS_MONAI_DATA")
    assert demo_data_dir() == os.path.join(os.path.expanduser("~"), ".cache", "genesis_monai", "demo")


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "genesis_monai", "demo-data", str(out), "--n_volumes", "3",
         "--shape", "[64,64,32]", "--spacing", "[5.0,5.0,10.0]"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    content = json.load(open(out / "dataset.json"))
    assert content["genesis_demo"]["params"]["n_volumes"] == 3
    assert content["genesis_demo"]["params"]["shape"] == [64, 64, 32]
    assert len(os.listdir(out / "imagesTr")) == 3
    assert str(out / "dataset.json") in proc.stdout


def test_smoothing_matches_a_gaussian_filter():
    from genesis_monai.data.demo.geometry import smooth

    a = np.random.default_rng(0).random((12, 13, 9)).astype(np.float32)
    ref = ndimage.gaussian_filter(a, (1.0, 0.6, 0.0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(smooth(a, (1.0, 0.6, 0.0)), ref, atol=2e-4)
