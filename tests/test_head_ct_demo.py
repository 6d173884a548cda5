"""The procedural head-CT phantom (SMART-Net's demo data): anatomy, hemorrhages, determinism, writer, CLI."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from genesis_monai.data.demo import (
    HEAD_CT,
    HEMORRHAGE_KINDS,
    PHANTOMS,
    head_ct_lesion_kinds,
    make_head_ct_volume,
    write_demo_dataset,
)
from genesis_monai.data.demo.head_ct import head_ct_affine, head_ct_entry_fields, is_negative_index

# the default 204.8 x 204.8 x 140 mm field of view at half the in-plane resolution and 14 slices of 10 mm
SMALL = dict(shape=(64, 64, 14), spacing=(3.2, 3.2, 10.0))
IN_PLANE = np.zeros((3, 3, 1), bool)
IN_PLANE[1, :, 0] = IN_PLANE[:, 1, 0] = True


@pytest.fixture(scope="module")
def default_volume():
    return make_head_ct_volume(0, return_masks=True)  # default shape and spacing; 3 lesions


@pytest.fixture(scope="module")
def small_volumes():
    return [make_head_ct_volume(i, **SMALL, return_masks=True) for i in range(12)]


def test_default_volume_types_shape_and_affine(default_volume):
    image, label, _ = default_volume
    assert image.shape == label.shape == (128, 128, 28)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1}
    affine = head_ct_affine((128, 128, 28), (1.6, 1.6, 5.0))
    np.testing.assert_allclose(np.diag(affine)[:3], (1.6, 1.6, 5.0))
    np.testing.assert_allclose(affine[:3, :3] @ np.array([63.5, 63.5, 13.5]) + affine[:3, 3], 0.0, atol=1e-9)


def test_anatomy_hu_ranges(default_volume):
    image, label, m = default_volume
    outside = ~ndimage.binary_dilation(m["head"], iterations=2)
    assert abs(float(image[outside].mean()) + 1000.0) < 3.0 and float(np.percentile(image[outside], 99)) < -980.0
    skull_core = ndimage.binary_erosion(m["skull"], IN_PLANE)
    assert skull_core.sum() > 1000 and 700.0 <= float(np.median(image[skull_core])) <= 1500.0
    assert float(image[skull_core].max()) > 1100.0  # cortical tables
    scalp = m["head"] & ~ndimage.binary_dilation(m["skull"] | ~m["head"], IN_PLANE)
    assert scalp.sum() > 100 and 10.0 <= float(np.median(image[scalp])) <= 50.0
    near_bone = ndimage.binary_dilation(m["skull"], IN_PLANE, iterations=2)
    parenchyma = m["intracranial"] & ~m["csf"] & ~m["falx"] & ~near_bone & (label == 0)
    assert 28.0 <= float(np.median(image[parenchyma])) <= 45.0
    ventricles = ndimage.binary_erosion(m["ventricles"], IN_PLANE)
    assert ventricles.sum() > 20 and float(np.median(image[ventricles])) < 15.0
    falx = m["falx"] & ~near_bone
    assert falx.sum() > 20 and float(np.median(image[falx])) > float(np.median(image[parenchyma])) + 8.0


def test_same_seed_same_bytes_other_seed_or_index_differs():
    a_img, a_lab = make_head_ct_volume(1, **SMALL, seed=3)
    b_img, b_lab = make_head_ct_volume(1, **SMALL, seed=3)
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    assert not np.array_equal(a_img, make_head_ct_volume(1, **SMALL, seed=4)[0])
    assert not np.array_equal(a_img, make_head_ct_volume(4, **SMALL, seed=3)[0])


def test_every_third_volume_is_negative_and_the_plan_matches_the_label(small_volumes):
    for i, (image, label, m) in enumerate(small_volumes):
        kinds = head_ct_lesion_kinds(i)
        assert is_negative_index(i) == (i % 3 == 2) == (kinds == ())
        assert label.any() == bool(kinds), i
        assert 0 <= len(kinds) <= 3 and set(kinds) <= set(HEMORRHAGE_KINDS)
        drawn = {k[len("lesion_"):] for k in m if k.startswith("lesion_")}
        assert drawn == set(kinds), i  # every planned lesion has label voxels, nothing else has
        if kinds:
            union = np.any([m[f"lesion_{k}"] for k in drawn], axis=0)
            np.testing.assert_array_equal(union, label > 0)
        assert head_ct_entry_fields(i) == {"hemorrhage": int(bool(kinds)), "hemorrhage_kinds": sorted(set(kinds))}


def test_several_kinds_occur_over_12_volumes(small_volumes):
    seen = {k[len("lesion_"):] for _, _, m in small_volumes for k in m if k.startswith("lesion_")}
    assert len(seen) >= 4, seen
    assert sum(len(head_ct_lesion_kinds(i)) > 1 for i in range(12)) >= 2  # some volumes hold several lesions


def test_hemorrhage_lies_inside_the_skull_not_in_air_or_bone(small_volumes, default_volume):
    for image, label, m in small_volumes + [default_volume]:
        if not label.any():
            continue
        lesion = label > 0
        assert np.all(m["intracranial"][lesion]) and not np.any(m["skull"][lesion])
        assert float(image[lesion].min()) > -100.0  # no air voxel in the label


def test_lesion_hu_and_visibility_in_the_brain_window(small_volumes, default_volume):
    """Away from the bone's partial volume, every lesion is 50-90 HU and stands out in the [0, 80] window."""
    checked = set()
    for image, label, m in small_volumes + [default_volume]:
        near_bone = ndimage.binary_dilation(m["skull"], IN_PLANE, iterations=2)
        parenchyma = (m["intracranial"] & ~m["csf"] & ~m["falx"] & ~near_bone
                      & ~ndimage.binary_dilation(label > 0, IN_PLANE))
        window = np.clip(image, 0, 80).astype(float)
        for key in [k for k in m if k.startswith("lesion_")]:
            core = m[key] & ~near_bone
            around = ndimage.binary_dilation(m[key], IN_PLANE, iterations=3) & parenchyma
            if core.sum() < 4 or around.sum() < 4:
                continue
            assert 50.0 <= float(np.median(image[core])) <= 90.0, key
            contrast = float(window[core].mean() - window[around].mean())
            assert 12.0 <= contrast <= 60.0, (key, contrast)
            checked.add(key)
    assert len(checked) >= 4, checked


def test_negative_scans_still_have_bright_mimics(small_volumes):
    """A threshold is not enough: negatives hold falx, choroid calcifications and bone partial volume in the window."""
    away_from_bone = 0
    for i in (2, 5, 8, 11):
        image, label, m = small_volumes[i]
        assert not label.any()
        bright = m["intracranial"] & (image > 55)
        assert bright.sum() > 100, i  # mostly the inner table's partial volume
        away_from_bone += int((bright & ~ndimage.binary_dilation(m["skull"], IN_PLANE, iterations=2)).sum())
    assert away_from_bone >= 10  # falx, calcified choroid plexus


def test_end_slices_outside_the_head_are_pure_air(small_volumes):
    n_empty = 0
    for image, label, m in small_volumes:
        in_window = (np.clip(image, 0, 80) > 0).any(axis=(0, 1))
        assert in_window.sum() >= image.shape[2] // 2  # most slices cut the head
        for z in (0, image.shape[2] - 1):
            if not m["head"][:, :, z].any():
                n_empty += 1
                assert not in_window[z] and image[:, :, z].max() < -950  # dropped by "drop empty end slices"
    assert n_empty >= 3


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"shape must be 3 integers \(X, Y, Z\) with X >= 48, Y >= 48, Z >= 12"):
        make_head_ct_volume(0, shape=(32, 32, 8))
    with pytest.raises(ValueError, match="spacing"):
        make_head_ct_volume(0, spacing=(1.6, 0.0, 5.0))
    with pytest.raises(ValueError, match="index"):
        make_head_ct_volume(-1)
    with pytest.raises(ValueError, match="seed"):
        head_ct_lesion_kinds(0, seed=-2)


# ---- the data-set writer -----------------------------------------------------------------------------------
WRITE = dict(n_volumes=3, shape=(48, 48, 12), spacing=(4.2667, 4.2667, 11.667))


def _mtimes(folder):
    return {os.path.relpath(os.path.join(r, f), folder): os.stat(os.path.join(r, f)).st_mtime_ns
            for r, _, fs in os.walk(folder) for f in fs}


def test_writer_writes_head_ct_with_hemorrhage_fields_and_resumes(tmp_path):
    assert PHANTOMS["head_ct"] is HEAD_CT and HEAD_CT.default_n_volumes == 24
    out = str(tmp_path / "head")
    path = write_demo_dataset(out, phantom="head_ct", **WRITE)
    content = json.load(open(path))
    assert content["labels"] == {"0": "background", "1": "hemorrhage"} and content["modality"] == {"0": "CT"}
    assert content["genesis_demo"]["generator"] == "genesis_monai.data.demo.head_ct"
    entries = content["training"] + content["validation"] + content["test"]
    assert [e["image"] for e in entries] == [f"imagesTr/head_{i:03d}.nii.gz" for i in range(3)]
    for i, entry in enumerate(entries):
        img = nib.load(os.path.join(out, entry["image"]))
        lab = np.asanyarray(nib.load(os.path.join(out, entry["label"])).dataobj)
        ref_img, ref_lab = make_head_ct_volume(i, WRITE["shape"], WRITE["spacing"])
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), ref_img)
        np.testing.assert_array_equal(lab, ref_lab)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S") and img.get_data_dtype() == np.int16
        assert entry["hemorrhage"] == int(lab.any()) == int(i != 2)
        assert entry["hemorrhage_kinds"] == sorted(set(head_ct_lesion_kinds(i)))
    # complete: nothing rewritten; interrupted: finished volumes kept, the rest and the datalist rewritten
    before = _mtimes(out)
    write_demo_dataset(out, phantom="head_ct", **WRITE)
    assert _mtimes(out) == before
    os.remove(path)
    os.remove(os.path.join(out, "imagesTr", "head_001.nii.gz"))
    write_demo_dataset(out, phantom="head_ct", **WRITE)
    after = _mtimes(out)
    assert after["imagesTr/head_000.nii.gz"] == before["imagesTr/head_000.nii.gz"]
    assert os.path.isfile(os.path.join(out, "imagesTr", "head_001.nii.gz"))
    assert json.load(open(path)) == content
    # the chest-CT generator does not replace it
    with pytest.raises(FileExistsError, match="not written by the chest_ct demo generator"):
        write_demo_dataset(out, n_volumes=3)


def test_command_line_writes_the_head_ct(tmp_path, capsys):
    from genesis_monai.__main__ import main

    out = tmp_path / "cli"
    main(["demo-data", str(out), "--phantom", "head_ct", "--n_volumes", "3", "--shape", "[48,48,12]",
          "--spacing", "[4.2667,4.2667,11.667]"])
    content = json.load(open(out / "dataset.json"))
    assert content["genesis_demo"]["params"]["shape"] == [48, 48, 12]
    assert sorted(os.listdir(out / "labelsTr")) == [f"head_{i:03d}.nii.gz" for i in range(3)]
    assert str(out / "dataset.json") in capsys.readouterr().out


def test_default_folder_is_a_sibling_of_the_chest_ct_one(monkeypatch, tmp_path):
    from genesis_monai.data.demo import demo_data_dir

    monkeypatch.setenv("GENESIS_MONAI_DATA", str(tmp_path / "demo"))
    assert demo_data_dir() == str(tmp_path / "demo")
    assert demo_data_dir("head_ct") == str(tmp_path / "demo_head_ct")
    monkeypatch.delenv("GENESIS_MONAI_DATA")
    assert demo_data_dir("head_ct") == os.path.join(os.path.expanduser("~"), ".cache", "genesis_monai", "demo_head_ct")
    with pytest.raises(ValueError, match="unknown phantom 'xray'"):
        demo_data_dir("xray")
