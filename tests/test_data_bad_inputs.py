"""Bad input to data preparation: each row of the issue, one test (plus what it must not break)."""

import gzip
import json
import logging
import os

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.benchmarks.cubes import synthetic_chest_ct
from genesis_monai.data import extract as extract_module
from genesis_monai.data.datalist import segmentation_datalist
from genesis_monai.data.extract import SETTINGS_FILE, extract_cubes_cli, extract_cubes_from_folder
from genesis_monai.data.pretraining import resolve_pretraining_data

KW = dict(crop=(16, 16, 8), border=(2, 2, 2), lung_max=0.5, progress=False)
EXTRACTION = {"crop": (16, 16, 8), "border": (2, 2, 2), "lung_max": 0.5, "scale": 2}


def _save(path, array, affine=None):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _ct_folder(folder, names, shape=(40, 40, 24)):
    return [_save(os.path.join(folder, name), synthetic_chest_ct(shape, seed=i)) for i, name in enumerate(names)]


def _npy_bytes(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder)) if f.endswith(".npy")}


# (a) --------------------------------------------------------------------------------------------
def _bad_files(folder):
    """Unreadable files whose names sort before and among the good ones (they used to take fold places)."""
    with open(os.path.join(folder, "a_broken.nii.gz"), "wb") as f:
        f.write(b"garbage")
    _save(os.path.join(folder, "b_flat.nii.gz"), np.zeros((40, 40), np.int16))
    _save(os.path.join(folder, "case_02x_small.nii.gz"), synthetic_chest_ct((40, 40, 10), seed=1))
    return ["a_broken.nii.gz", "b_flat.nii.gz", "case_02x_small.nii.gz"]


def test_a_unreadable_files_are_checked_before_folds_are_dealt(tmp_path, caplog):
    names = [f"case_{i:02d}.nii.gz" for i in range(7)]
    clean, mixed = str(tmp_path / "clean"), str(tmp_path / "mixed")
    _ct_folder(clean, names)
    _ct_folder(mixed, names)
    bad = _bad_files(mixed)
    ref = extract_cubes_from_folder(clean, str(tmp_path / "out_clean"), scale=2, **KW)
    with caplog.at_level(logging.DEBUG, logger="genesis_monai.data.extract"):
        s = extract_cubes_from_folder(mixed, str(tmp_path / "out_mixed"), scale=2, **KW)
    # the readable volumes are dealt exactly as if the bad files were not there: same folds, same bytes
    assert sorted(s["cubes_written"]) == sorted(ref["cubes_written"]) == [0, 1, 2, 3, 4, 5, 6]
    assert _npy_bytes(str(tmp_path / "out_mixed")) == _npy_bytes(str(tmp_path / "out_clean"))
    assert s["splits"] == ref["splits"] and s["volumes_found"] == 10
    assert sorted(os.path.basename(e["path"]) for e in s["skipped"]) == bad
    # one WARNING line per skipped file; the details at DEBUG level
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(warnings) == 3 and all("\n" not in r.getMessage() for r in warnings)
    assert sorted(os.path.basename(r.args[0]) for r in warnings) == bad
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "details" in r.getMessage()]
    assert len(debug) == 3 and any("a_broken.nii.gz" in r.getMessage() for r in debug)


def test_a_empty_training_or_validation_split_is_an_error_and_exit_status(tmp_path, capsys):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    _ct_folder(data, ["case_00.nii.gz"])
    _bad_files(data)
    with pytest.raises(ValueError, match=r"no readable volume for the validation split.*1 of 4 volume\(s\) readable"
                                         r".*skipped: a_broken.nii.gz"):
        extract_cubes_from_folder(data, out, scale=2, **KW)
    assert not os.path.exists(out)  # refused before anything was written
    with pytest.raises(SystemExit) as exit_info:
        extract_cubes_cli(data, out, scale=2, crop=(16, 16, 8), border=(2, 2, 2), quiet=True)
    assert exit_info.value.code == 1 and "validation split" in capsys.readouterr().err
    # a volume whose header is fine but whose voxels are not CT: validation ends up without cubes
    data2 = str(tmp_path / "data2")
    _ct_folder(data2, ["case_00.nii.gz"])
    _save(os.path.join(data2, "case_01.nii.gz"), (synthetic_chest_ct((40, 40, 24)) > 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"no validation cubes.*folds \[5, 6\].*not CT in HU"):
        extract_cubes_from_folder(data2, out, scale=2, **KW)
    assert os.path.isfile(os.path.join(out, "bat_2_s_16x16x8_0.npy"))  # finished work kept
    assert not os.path.exists(os.path.join(out, "cubes_datalist.json"))
    # asking for some folds only is a partial run by request: a warning, and a datalist
    s = extract_cubes_from_folder(data2, str(tmp_path / "out2"), scale=2, folds=[0], **KW)
    assert s["splits"]["training"] == 2 and s["splits"]["validation"] == 0 and s["datalist"]


# (b) --------------------------------------------------------------------------------------------
def _pairs(folder, label_shape, image_shape=(12, 10, 8), truncate_label=False):
    img = _save(os.path.join(folder, "imagesTr", "a.nii.gz"), np.zeros(image_shape, np.int16))
    lab = _save(os.path.join(folder, "labelsTr", "a.nii.gz"), np.zeros(label_shape, np.uint8))
    if truncate_label:  # header intact, voxels cut off: only the header may be read
        raw = gzip.decompress(open(lab, "rb").read())
        with open(lab, "wb") as f:
            f.write(gzip.compress(raw[:400]))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"training": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}]}, f)
    return img, lab


def test_b_label_shape_differing_from_its_image_names_both(tmp_path):
    img, lab = _pairs(str(tmp_path / "bad"), (12, 10, 7), truncate_label=True)
    with pytest.raises(ValueError) as err:
        segmentation_datalist(str(tmp_path / "bad"), "training")
    text = str(err.value)
    assert img in text and lab in text and "(12, 10, 7)" in text and "(12, 10, 8)" in text and "training[0]" in text
    # a 4D (multi-channel) image and its 3D label agree on (X, Y, Z); the check can be switched off
    _pairs(str(tmp_path / "ok"), (12, 10, 8), image_shape=(12, 10, 8, 2))
    items = segmentation_datalist(str(tmp_path / "ok"), "training")
    assert items == [{"image": str(tmp_path / "ok" / "imagesTr" / "a.nii.gz"),
                      "label": str(tmp_path / "ok" / "labelsTr" / "a.nii.gz")}]
    assert len(segmentation_datalist(str(tmp_path / "bad"), "training", check_shapes=False)) == 1


# (c) --------------------------------------------------------------------------------------------
def test_c_settings_left_by_a_run_without_cubes_do_not_block_a_corrected_rerun(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    _ct_folder(data, ["case_00.nii.gz", "case_01.nii.gz"])
    with pytest.raises(ValueError, match="no cubes could be extracted"):
        extract_cubes_from_folder(data, out, scale=2, rule="tissue", tissue_min=1.1, **KW)  # a rule nothing passes
    assert os.path.isfile(os.path.join(out, SETTINGS_FILE)) and not _npy_bytes(out)
    s = extract_cubes_from_folder(data, out, scale=2, **KW)  # corrected: other settings, no --overwrite needed
    assert s["splits"]["training"] == 2 and s["splits"]["validation"] == 2
    assert json.load(open(os.path.join(out, SETTINGS_FILE)))["extract"]["rule"] == "auto"
    # cubes made with the earlier settings are still protected
    with pytest.raises(ValueError, match=r"other settings \(differing: seed"):
        extract_cubes_from_folder(data, out, scale=2, seed=1, **KW)


# (d) --------------------------------------------------------------------------------------------
def test_d_cube_shape_not_divisible_is_refused_before_extraction(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    _ct_folder(data, ["case_00.nii.gz", "case_01.nii.gz"])

    def no_extraction(*args, **kwargs):
        raise AssertionError("extraction must not start")

    monkeypatch.setattr(extract_module, "extract_cubes_from_folder", no_extraction)
    with pytest.raises(ValueError, match=r"cube_shape \(20, 16, 8\) is not divisible by 8"):
        resolve_pretraining_data(data, cube_shape=(20, 16, 8), extraction=EXTRACTION, divisor=8)
    with pytest.raises(ValueError, match="unknown cube extraction option"):
        resolve_pretraining_data(data, cube_shape=(16, 16, 8), extraction={"lungmax": 0.5}, divisor=8)
    with pytest.raises(ValueError, match="differs from cube_shape"):
        resolve_pretraining_data(data, cube_shape=(16, 16, 8), extraction={"crop": (32, 32, 16)})
    assert sorted(os.listdir(data)) == ["case_00.nii.gz", "case_01.nii.gz"]  # nothing written


# (e) --------------------------------------------------------------------------------------------
def test_e_cubes_go_to_dataset_dir_by_default_or_to_cubes_dir(tmp_path):
    data = str(tmp_path / "data")
    _ct_folder(data, ["case_00.nii.gz", "case_01.nii.gz"])
    splits = resolve_pretraining_data(data, cube_shape=(16, 16, 8), extraction=EXTRACTION, divisor=8)
    default_dir = os.path.join(data, "cubes_16x16x8")
    assert all(os.path.dirname(e["image"]) == default_dir for e in splits["training"] + splits["validation"])
    # another folder: the dataset folder is left as it is; a second call reuses the cubes
    other = str(tmp_path / "elsewhere" / "cubes")
    before = sorted(os.listdir(data))
    splits = resolve_pretraining_data(data, cube_shape=(16, 16, 8), extraction=EXTRACTION, cubes_dir=other)
    assert all(os.path.dirname(e["image"]) == other for e in splits["training"] + splits["validation"])
    assert sorted(os.listdir(data)) == before
    stamps = {f: os.stat(os.path.join(other, f)).st_mtime_ns for f in os.listdir(other)}
    again = resolve_pretraining_data(data, cube_shape=(16, 16, 8), extraction=EXTRACTION, cubes_dir=other)
    assert again == splits
    assert {f: os.stat(os.path.join(other, f)).st_mtime_ns for f in os.listdir(other) if f.endswith(".npy")} == \
        {f: t for f, t in stamps.items() if f.endswith(".npy")}
