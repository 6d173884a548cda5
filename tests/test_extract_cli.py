"""Folder-level extraction, datalist, resumability, bad input, CLI and the cube datasets."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from genesis_monai.benchmarks.cubes import synthetic_chest_ct
from genesis_monai.data.cube_dataset import CubeDataset, find_cube_files, load_cube_datalist
from genesis_monai.data.extract import NpyStreamWriter, assign_folds, extract_cubes_from_folder

# small volumes, small cubes: the geometry of the reference, scaled down
KW = dict(crop=(16, 16, 8), border=(2, 2, 2), lung_max=0.5, progress=False)


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


def _ct_folder(folder, n=7, shape=(40, 40, 24)):
    return [_save(os.path.join(folder, f"case_{i:02d}.nii.gz"), synthetic_chest_ct(shape, seed=i)) for i in range(n)]


def _mtimes(folder):
    return {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in sorted(os.listdir(folder)) if f.endswith(".npy")}


def test_plain_folder_writes_folds_and_datalist(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "cubes")
    _ct_folder(data, n=7)
    s = extract_cubes_from_folder(data, out, scale=3, seed=0, **KW)
    assert s["volumes_found"] == 7 and s["volumes_read"] == 7 and not s["skipped"]
    # dealt 0, 5, 1, 2, 3, 4, 6: five training folds, two validation folds, no test
    assert sorted(s["cubes_written"]) == [0, 1, 2, 3, 4, 5, 6]
    assert s["splits"] == {"training": 15, "validation": 6, "test": 0}
    names = sorted(f for f in os.listdir(out) if f.endswith(".npy"))
    assert names == [f"bat_3_s_16x16x8_{k}.npy" for k in range(7)]
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]
    content = json.load(open(os.path.join(out, "cubes_datalist.json")))
    assert content["training"][0] == {"image": "bat_3_s_16x16x8_0.npy", "fold": 0, "n_cubes": 3}
    assert [e["fold"] for e in content["validation"]] == [5, 6] and content["test"] == []
    train = load_cube_datalist(os.path.join(out, "cubes_datalist.json"), "training")
    assert [os.path.isabs(e["image"]) and os.path.isfile(e["image"]) for e in train] == [True] * 5
    arr = np.load(train[0]["image"])
    assert arr.shape == (3, 16, 16, 8) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    ds = CubeDataset(train)
    assert len(ds) == 15
    item = ds[4]
    assert item["image"].shape == (1, 16, 16, 8) and item["image"].dtype == torch.float32
    np.testing.assert_array_equal(item["image"][0].numpy(), np.load(train[1]["image"])[1])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 1, 16, 16, 8)


def test_tiny_folder_still_has_training_and_validation(tmp_path):
    data = str(tmp_path / "data")
    _ct_folder(data, n=2)
    layout, folds = assign_folds(data)
    assert layout == "dealt" and sorted(folds) == [0, 5]
    s = extract_cubes_from_folder(data, str(tmp_path / "cubes"), scale=2, **KW)
    assert s["splits"]["training"] == 2 and s["splits"]["validation"] == 2


def test_luna_subset_folders(tmp_path):
    data = str(tmp_path / "luna")
    for fold in (0, 3, 5, 8):
        _save(os.path.join(data, f"subset{fold}", f"scan{fold}.nii.gz"), synthetic_chest_ct((40, 40, 24), seed=fold))
    _save(os.path.join(data, "other", "x.nii.gz"), synthetic_chest_ct((40, 40, 24), seed=9))  # not a fold folder
    s = extract_cubes_from_folder(data, str(tmp_path / "cubes"), scale=2, **KW)
    assert s["layout"] == "subfolders" and sorted(s["cubes_written"]) == [0, 3, 5, 8]
    assert s["splits"] == {"training": 4, "validation": 2, "test": 2}
    found = find_cube_files(str(tmp_path / "cubes"))
    assert [e["fold"] for e in found["training"]] == [0, 3] and [e["fold"] for e in found["test"]] == [8]


def test_deterministic_resumable_and_overwrite(tmp_path):
    data, a, b = str(tmp_path / "data"), str(tmp_path / "a"), str(tmp_path / "b")
    _ct_folder(data, n=6)
    extract_cubes_from_folder(data, a, scale=3, seed=7, **KW)
    extract_cubes_from_folder(data, b, scale=3, seed=7, num_workers=2, **KW)  # threads: same cubes
    for name in _mtimes(a):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
    before = _mtimes(a)
    s = extract_cubes_from_folder(data, a, scale=3, seed=7, **KW)  # resume: nothing redone
    assert sorted(s["folds_kept"]) == [0, 1, 2, 3, 4, 5] and s["cubes_written"] == {} and _mtimes(a) == before
    assert s["splits"]["training"] == 15
    # other settings on a written folder: refused, then allowed with overwrite
    with pytest.raises(ValueError, match="other settings.*seed"):
        extract_cubes_from_folder(data, a, scale=3, seed=8, **KW)
    s = extract_cubes_from_folder(data, a, scale=3, seed=8, overwrite=True, **KW)
    assert sorted(s["cubes_written"]) == [0, 1, 2, 3, 4, 5] and _mtimes(a) != before


def test_bad_inputs_are_skipped_with_reasons(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "cubes")
    _ct_folder(data, n=6)
    _save(os.path.join(data, "z_small.nii.gz"), synthetic_chest_ct((40, 40, 10), seed=1))
    _save(os.path.join(data, "z_flat.nii.gz"), np.zeros((40, 40), np.int16))
    _save(os.path.join(data, "z_mask.nii.gz"), (synthetic_chest_ct((40, 40, 24)) > 0).astype(np.uint8))
    _save(os.path.join(data, "z_nan.nii.gz"), np.full((40, 40, 24), np.nan, np.float32))
    with open(os.path.join(data, "z_broken.nii.gz"), "wb") as f:
        f.write(b"garbage")
    s = extract_cubes_from_folder(data, out, scale=2, **KW)
    reasons = {os.path.basename(e["path"]): e["reason"] for e in s["skipped"]}
    assert set(reasons) == {"z_small.nii.gz", "z_flat.nii.gz", "z_mask.nii.gz", "z_nan.nii.gz", "z_broken.nii.gz"}
    assert "too small" in reasons["z_small.nii.gz"] and "needs at least" in reasons["z_small.nii.gz"]
    assert "3D" in reasons["z_flat.nii.gz"]
    assert "not CT in HU" in reasons["z_mask.nii.gz"]
    assert "NaN" in reasons["z_nan.nii.gz"]
    assert "cannot be read" in reasons["z_broken.nii.gz"]
    assert s["splits"]["training"] > 0 and s["splits"]["validation"] > 0


def test_nothing_usable_errors_and_keeps_old_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"no volumes found in {empty}"):
        extract_cubes_from_folder(str(empty), str(tmp_path / "out"), **KW)
    bad = str(tmp_path / "bad")
    _save(os.path.join(bad, "small.nii.gz"), synthetic_chest_ct((30, 30, 10)))
    out = tmp_path / "out2"
    out.mkdir()
    (out / "keep.npy").write_bytes(b"precious")
    with pytest.raises(ValueError, match=f"no cubes could be extracted from the 1 volume\\(s\\) in {bad}.*too small"):
        extract_cubes_from_folder(bad, str(out), **KW)
    assert (out / "keep.npy").read_bytes() == b"precious"
    assert not [f for f in os.listdir(out) if f.startswith("bat_") or f.endswith(".partial")]
    # a rule nothing passes says what the candidates scored (two volumes: training and validation)
    data = str(tmp_path / "data")
    _ct_folder(data, n=2)
    with pytest.raises(ValueError, match="densest candidate scored .* < tissue_min 1.1"):
        extract_cubes_from_folder(data, str(tmp_path / "out3"), **{**KW, "rule": "tissue", "tissue_min": 1.1})
    with pytest.raises(ValueError, match="unknown cube extraction option"):
        extract_cubes_from_folder(data, str(tmp_path / "out4"), lungmax=0.2)


def test_stream_writer_is_atomic(tmp_path):
    path = str(tmp_path / "bat_2_s_4x4x2_0.npy")
    cubes = np.random.default_rng(0).random((5, 4, 4, 2)).astype(np.float32)
    with NpyStreamWriter(path, (4, 4, 2)) as w:
        w.append(cubes[:2])
        w.append(cubes[2:])
        w.commit()
    np.testing.assert_array_equal(np.load(path), cubes)
    assert np.load(path, mmap_mode="r").shape == (5, 4, 4, 2)
    with pytest.raises(KeyboardInterrupt):
        with NpyStreamWriter(str(tmp_path / "other.npy"), (4, 4, 2)) as w:
            w.append(cubes)
            raise KeyboardInterrupt  # interrupted mid-fold: no file, no temp file
    assert sorted(os.listdir(tmp_path)) == ["bat_2_s_4x4x2_0.npy"]


def test_find_cube_files_and_dataset_errors(tmp_path):
    rng = np.random.default_rng(0)
    for fold in (0, 1, 5):  # upstream generator name, without _s_
        np.save(tmp_path / f"bat_32_64x64x32_{fold}.npy", rng.random((2, 8, 8, 8)))
    np.save(tmp_path / "bat_32_s_64x64x32_1.npy", rng.random((3, 8, 8, 8)).astype(np.float32))
    found = find_cube_files(str(tmp_path))
    assert [os.path.basename(e["image"]) for e in found["training"]] == [
        "bat_32_64x64x32_0.npy", "bat_32_s_64x64x32_1.npy"]  # the _s_ name wins for fold 1
    assert len(CubeDataset(found["training"] + found["validation"])) == 7
    np.save(tmp_path / "bat_16_s_64x64x32_0.npy", rng.random((1, 8, 8, 8)))
    with pytest.raises(ValueError, match="several cube sets"):
        find_cube_files(str(tmp_path))
    assert len(find_cube_files(str(tmp_path), scale=16)["training"]) == 1

    np.save(tmp_path / "two_d.npy", rng.random((4, 8)))
    with pytest.raises(ValueError, match="two_d.npy.*expected cubes"):
        CubeDataset([str(tmp_path / "two_d.npy")])
    np.save(tmp_path / "hu.npy", rng.uniform(-1000, 1000, (2, 8, 8, 8)))
    with pytest.raises(ValueError, match=r"hu.npy: cube 0 has values"):
        CubeDataset([{"image": str(tmp_path / "hu.npy")}])
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npy is not a readable"):
        CubeDataset([str(tmp_path / "junk.npy")])
    np.save(tmp_path / "odd.npy", rng.random((10, 9, 9)))  # one cube, sides not divisible by 8
    with pytest.warns(UserWarning, match="not divisible by 8"):
        ds = CubeDataset(str(tmp_path / "odd.npy"), transform=lambda d: {**d, "seen": True})
    assert len(ds) == 1 and ds[0]["image"].shape == (1, 10, 9, 9) and ds[0]["seen"]
    with pytest.raises(ValueError, match="no cube files"):
        CubeDataset([])


def test_cube_dataset_pickles_without_the_memory_maps(tmp_path):
    import pickle

    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((3, 8, 8, 8)).astype(np.float32))
    ds = CubeDataset([str(tmp_path / "c.npy")])
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays == {} and torch.equal(clone[2]["image"], ds[2]["image"])


def test_cli_end_to_end(tmp_path, capsys):
    data, out = str(tmp_path / "data"), str(tmp_path / "cubes")
    _ct_folder(data, n=3)
    cmd = [sys.executable, "-m", "genesis_monai", "extract-cubes", "--data", data, "--save", out, "--scale", "2",
           "--crop", "16,16,8", "--border", "2,2,2", "--lung_max", "0.5", "--seed", "3", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "cubes per split: training 4, validation 2" in run.stdout
    assert os.path.isfile(os.path.join(out, "bat_2_s_16x16x8_5.npy"))
    from genesis_monai.data.extract import extract_cubes_cli

    with pytest.raises(SystemExit) as exit_info:  # errors: a message and exit status 1, no traceback
        extract_cubes_cli(str(tmp_path / "nope"), out)
    assert exit_info.value.code == 1 and "does not exist" in capsys.readouterr().err
