"""Self-discovery steps 2-3 (genesis_monai.data.discovery) against plain-loop oracles, on tiny synthetic chest CTs."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_cubes import reference_reject  # noqa: E402
from reference_discovery import loop_coordinate, loop_crop, loop_neighbours, loop_resize_box  # noqa: E402

from genesis_monai.benchmarks.cubes import synthetic_chest_ct  # noqa: E402
from genesis_monai.data.cubes import corner_ranges, draw_corners  # noqa: E402
from genesis_monai.data.discovery import (VolumeSet, discover, draw_multires_boxes, extract_features,  # noqa: E402
                                          find_coordinate, generate_patterns, multires_ranges, nearest_neighbours,
                                          read_discovery_datalist, resample_boxes, save_class_grid)
from genesis_monai.data.discovery import patterns as patterns_mod  # noqa: E402
from genesis_monai.data.discovery.state import read_state  # noqa: E402
from genesis_monai.data.extraction_options import ExtractionOptions  # noqa: E402
from genesis_monai.data.intensity import normalise_intensity  # noqa: E402
from genesis_monai.data.pattern_files import PatternDataset, find_pattern_files  # noqa: E402
from genesis_monai.networks.unet3d import UNet3D  # noqa: E402

SHAPE = (48, 48, 32)
CROP = (16, 16, 8)
OPTS = ExtractionOptions(border=(3, 3, 2))  # reference lung rule (0.15) on CT; small border for small volumes
KW = dict(n_classes=5, n_instances=4, n_instances_val=2, crop=CROP, chunk_classes=2, options=OPTS, seed=3,
          progress=False)


@pytest.fixture(scope="module")
def hu_volumes():
    return [synthetic_chest_ct(SHAPE, seed=i) for i in range(14)]


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)


def _sets(hu_volumes):
    return (VolumeSet(hu_volumes[:10], OPTS, name="training"), VolumeSet(hu_volumes[10:], OPTS, name="validation"))


def _run(hu_volumes, features, out, **over):
    train, val = _sets(hu_volumes)
    return generate_patterns(train, val, features[0], features[1], str(out), **{**KW, **over})


def _files(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))
            if n.endswith(".npy") and "vwGen" in n}


def _normalised(vol):
    return normalise_intensity(vol, -1000.0, 1000.0)


# ------------------------------------------------------------------------------------------------- #
# the vectorised parts against the loops
# ------------------------------------------------------------------------------------------------- #
def test_neighbours_are_the_true_k_nearest():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(30, 6))
    feats[7] = feats[3]  # a duplicate: the reference must still come first, ties by index
    refs = np.array([3, 0, 29, 7])
    got = nearest_neighbours(feats[refs], feats, 9, first=refs)
    for row, r in zip(got, refs):
        assert row.tolist() == loop_neighbours(feats[r], feats, 9, first=int(r))
    val = rng.normal(size=(12, 6))
    got_v = nearest_neighbours(feats[refs], val, 5)
    for row, r in zip(got_v, refs):
        assert row.tolist() == loop_neighbours(feats[r], val, 5)


def test_coordinates_match_the_trial_loop_with_and_without_the_quirk(hu_volumes):
    rng = np.random.default_rng(2)
    thr = 0.425
    for i in range(4):
        vol = _normalised(hu_volumes[i])
        low, high = corner_ranges(vol.shape, CROP, 3, OPTS.border)
        corners = draw_corners(rng, 40, low, high)
        previous = draw_corners(rng, 6, low, high)
        for quirk in (False, True):
            got = find_coordinate(vol, corners, previous, CROP, OPTS, 5.0, quirk)
            want = loop_coordinate(vol, corners, previous, CROP, thr, 0.15, 5.0, quirk=quirk)
            assert got == want


def test_repeat_quirk_fails_after_one_close_draw(hu_volumes):
    vol = _normalised(hu_volumes[0])
    off = ExtractionOptions(border=(3, 3, 2), rule="off")
    corners = np.array([[10, 10, 5], [20, 20, 10], [21, 3, 12]])
    previous = np.array([[10, 11, 5]])  # trial 0 is 1 voxel away
    assert find_coordinate(vol, corners, previous, CROP, off, 5.0, reference_repeat_quirk=False) == (1, 2)
    assert find_coordinate(vol, corners, previous, CROP, off, 5.0, reference_repeat_quirk=True) == (-1, 3)


def test_multires_sizes_scale_with_the_crop():
    assert multires_ranges((64, 64, 32)) == (50, 80, 10)  # the reference's U{50..79}, U{-10..9}
    assert multires_ranges((32, 32, 16)) == (25, 40, 5)


def test_resampled_boxes_equal_crop_then_interpolate():
    rng = np.random.default_rng(4)
    vol = rng.random((30, 26, 14)).astype(np.float32)
    crop = (8, 8, 4)
    corners = np.array([[0, 0, 0], [22, 18, 10], [5, 9, 3]] * 4)
    boxes = draw_multires_boxes(rng, corners, np.tile(vol.shape, (len(corners), 1)), crop)
    lo, hi, _ = multires_ranges(crop)
    assert (boxes[..., 3] >= lo).all() and (boxes[..., 3] < hi).all()
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 0] + boxes[..., 3] <= 30).all()
    assert (boxes[..., 1] + boxes[..., 4] <= 26).all()
    flat = boxes.reshape(-1, 5)
    got = resample_boxes(vol, flat, crop)
    want = np.stack([loop_resize_box(vol, b, crop) for b in flat])
    np.testing.assert_allclose(got, want, atol=2e-5)


# ------------------------------------------------------------------------------------------------- #
# a whole run
# ------------------------------------------------------------------------------------------------- #
def test_layout_content_and_rules(tmp_path, hu_volumes, features):
    out = tmp_path / "p"
    summary = _run(hu_volumes, features, out, multi_res=True)
    K, Kv, C = 4, 2, 5
    assert summary["chunks"] == [1, 2, 3] and summary["chunks_written"] == [1, 2, 3]
    files = find_pattern_files(str(out))
    assert [(r["part"], r["resolution"]) for r in files["training"]] == [(p, r) for p in (1, 2, 3) for r in (1, 2, 3)]
    train_ds = PatternDataset(files["training"])
    assert train_ds.n_classes == C and train_ds.class_counts.tolist() == [3 * K] * C
    val_ds = PatternDataset(files["validation"])
    assert val_ds.class_counts.tolist() == [Kv] * C
    item = train_ds[0]
    assert item["image"].shape == (1, *CROP) and item["label"].item() == 0
    # every row written: no reference off-by-one (2 classes x K rows in chunk 1, 1 class in chunk 3)
    assert np.load(out / "train_data1_vwGen_ex_ref_fold1.0.npy").shape == (2 * K, *CROP)
    assert np.load(out / "train_label3_vwGen_ex_ref_fold3.0.npy").tolist() == [[4.0]] * K
    # the datalist lists the same files
    dl = read_discovery_datalist(str(out))
    assert [(r["image"], r["label"]) for r in dl["training"]] == [(r["image"], r["label"]) for r in files["training"]]
    assert dl["n_classes"] == C and dl["n_instances"] == K and dl["crop"] == list(CROP)

    state = read_state(str(out))["patterns"]
    classes = state["classes"]
    coords = np.array([c["coordinate"] for c in classes])
    refs = [c["reference"] for c in classes]
    assert len(set(refs)) == C
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    assert (d[~np.eye(C, dtype=bool)] >= 5.0).all()
    train_f, val_f = features
    data1 = np.concatenate([np.load(out / f"train_data1_vwGen_ex_ref_fold{p}.0.npy") for p in (1, 2, 3)])
    data2 = np.concatenate([np.load(out / f"train_data2_vwGen_ex_ref_fold{p}.0.npy") for p in (1, 2, 3)])
    vdata = np.concatenate([np.load(out / f"val_data1_vwGen_ex_ref_fold{p}.0.npy") for p in (1, 2, 3)])
    for c, (ref, coord) in enumerate(zip(refs, coords)):
        ref_vol = _normalised(hu_volumes[ref])
        low, high = corner_ranges(SHAPE, CROP, 3, OPTS.border)
        assert (coord >= low).all() and (coord <= high).all()
        x, y, z = coord
        assert not reference_reject(ref_vol[x:x + 16, y:y + 16, z:z + 11], 0.425, 0.15, deps=8)
        nb = loop_neighbours(train_f[ref], train_f, K, first=ref)
        assert state["neighbours"]["training"][c] == nb and nb[0] == ref
        vnb = loop_neighbours(train_f[ref], val_f, Kv)
        assert state["neighbours"]["validation"][c] == vnb
        for j, v in enumerate(nb):
            np.testing.assert_array_equal(data1[c * K + j], loop_crop(_normalised(hu_volumes[v]), coord, CROP))
        for j, v in enumerate(vnb):
            np.testing.assert_array_equal(vdata[c * Kv + j],
                                          loop_crop(_normalised(hu_volumes[10 + v]), coord, CROP))
        boxes = draw_multires_boxes(patterns_mod._class_rng(3, c), np.tile(coord, (K, 1)),
                                    np.tile(SHAPE, (K, 1)), CROP)
        for j, v in enumerate(nb):
            np.testing.assert_allclose(data2[c * K + j], loop_resize_box(_normalised(hu_volumes[v]), boxes[j, 0], CROP),
                                       atol=2e-5)
    assert 0.0 <= data2.min() and data2.max() <= 1.0


def test_all_writing_modes_give_the_same_files(tmp_path, hu_volumes, features, monkeypatch):
    """Class-by-class streaming (windows of memory-mapped / in-memory volumes), volume-by-volume into memory,
    and volume-by-volume into memory-mapped files (chunks too large for memory) write the same bytes."""
    import functools

    from genesis_monai.data.discovery.writer import ChunkWriter

    class WholeVolumes(VolumeSet):
        reads_windows = False  # as NIfTI / DICOM volumes: each read whole, once per chunk

    modes = []

    def spy(*args, **kwargs):
        w = ChunkWriter(*args, **kwargs)
        modes.append(w.mode)
        return w

    monkeypatch.setattr(patterns_mod, "ChunkWriter", spy)
    _run(hu_volumes, features, tmp_path / "stream", multi_res=True)
    train, val = (WholeVolumes(v, OPTS, name=n) for v, n in ((hu_volumes[:10], "training"),
                                                             (hu_volumes[10:], "validation")))
    generate_patterns(train, val, features[0], features[1], str(tmp_path / "memory"), multi_res=True, **KW)
    monkeypatch.setattr(patterns_mod, "ChunkWriter", functools.partial(spy, memory_limit=0))
    generate_patterns(train, val, features[0], features[1], str(tmp_path / "memmap"), multi_res=True, **KW)
    assert modes == ["stream"] * 3 + ["memory"] * 3 + ["memmap"] * 3
    assert _files(tmp_path / "stream") == _files(tmp_path / "memory") == _files(tmp_path / "memmap")


def test_deterministic_for_a_seed(tmp_path, hu_volumes, features):
    _run(hu_volumes, features, tmp_path / "a", multi_res=True)
    _run(hu_volumes, features, tmp_path / "b", multi_res=True)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    _run(hu_volumes, features, tmp_path / "c", multi_res=True, seed=4)
    coords = [[c["coordinate"] for c in read_state(str(tmp_path / k))["patterns"]["classes"]] for k in "ac"]
    assert coords[0] != coords[1]


def test_resume_after_deleting_the_last_chunk(tmp_path, hu_volumes, features):
    out = tmp_path / "p"
    _run(hu_volumes, features, out, multi_res=False)
    before = _files(out)
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in before}
    for n in before:
        if "fold3.0" in n:
            os.remove(out / n)
    summary = _run(hu_volumes, features, out, multi_res=False)
    assert summary["chunks_written"] == [3] and summary["chunks_kept"] == [1, 2]
    assert _files(out) == before
    assert all(os.stat(out / n).st_mtime_ns == t for n, t in mtimes.items() if "fold3.0" not in n)


def test_resume_after_an_interrupt(tmp_path, hu_volumes, features, monkeypatch):
    _run(hu_volumes, features, tmp_path / "clean", multi_res=True)
    out = tmp_path / "p"
    real = patterns_mod.cut_crops
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # chunk 2, training crops
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(patterns_mod, "cut_crops", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(hu_volumes, features, out, multi_res=True)
    assert not [n for n in os.listdir(out) if n.endswith(".partial")]  # no half-written chunk left
    assert not [n for n in os.listdir(out) if "fold2.0" in n]
    t1 = os.stat(out / "train_data1_vwGen_ex_ref_fold1.0.npy").st_mtime_ns
    monkeypatch.setattr(patterns_mod, "cut_crops", real)
    summary = _run(hu_volumes, features, out, multi_res=True)
    assert summary["chunks_kept"] == [1] and summary["chunks_written"] == [2, 3]
    assert _files(out) == _files(tmp_path / "clean")
    assert os.stat(out / "train_data1_vwGen_ex_ref_fold1.0.npy").st_mtime_ns == t1


def test_more_classes_later_continue_the_plan(tmp_path, hu_volumes, features):
    _run(hu_volumes, features, tmp_path / "a", multi_res=False, n_classes=3)
    _run(hu_volumes, features, tmp_path / "a", multi_res=False, n_classes=5)
    _run(hu_volumes, features, tmp_path / "b", multi_res=False, n_classes=5)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    with pytest.raises(ValueError, match="n_instances"):
        _run(hu_volumes, features, tmp_path / "a", multi_res=False, n_instances=3)


def test_bad_inputs_give_clear_errors(tmp_path, hu_volumes, features):
    with pytest.raises(ValueError, match="n_instances=11 .* only 10 training volumes"):
        _run(hu_volumes, features, tmp_path / "a", n_instances=11)
    with pytest.raises(ValueError, match="n_instances_val=5 .* only 4 validation"):
        _run(hu_volumes, features, tmp_path / "a", n_instances_val=5)
    with pytest.raises(ValueError, match="n_classes=11 needs 11 different reference volumes"):
        _run(hu_volumes, features, tmp_path / "a", n_classes=11)
    with pytest.raises(ValueError, match="crop .* is larger than"):
        _run(hu_volumes, features, tmp_path / "a", crop=(56, 16, 8))
    with pytest.raises(ValueError, match="ran out of reference volumes"):
        _run(hu_volumes, features, tmp_path / "b", options=ExtractionOptions(border=(3, 3, 2), lung_max=0.0),
             max_trials=5)
    with pytest.raises(ValueError, match="features .* do not match"):
        train, val = _sets(hu_volumes)
        generate_patterns(train, val, features[0][:9], features[1], str(tmp_path / "c"), **KW)


# ------------------------------------------------------------------------------------------------- #
# features, picture, the command
# ------------------------------------------------------------------------------------------------- #
def test_features_are_pooled_deepest_encoder_stage(tmp_path, caplog):
    torch.manual_seed(0)
    net = UNet3D(width=0.125).eval()
    x = torch.rand(3, 1, 16, 16, 8)
    got = extract_features(net, x, batch_size=2, device="cpu", feature_shape=(16, 16, 8))
    with torch.no_grad():
        want = net.forward_features(x).mean(dim=(2, 3, 4)).numpy()
    assert got.shape == (3, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a checkpoint path gives the same features as the network it came from
    ckpt = tmp_path / "ae.pt"
    torch.save(net.state_dict(), ckpt)
    np.testing.assert_allclose(extract_features(str(ckpt), x, device="cpu", feature_shape=(16, 16, 8), width=0.125),
                               want, rtol=1e-5, atol=1e-6)
    # no weights: a seeded random network, with a warning
    with caplog.at_level(logging.WARNING):
        a = extract_features(None, x, device="cpu", feature_shape=(16, 16, 8), width=0.125, seed=5)
    assert "untrained network are weak" in caplog.text
    np.testing.assert_array_equal(a, extract_features(None, x, device="cpu", feature_shape=(16, 16, 8),
                                                      width=0.125, seed=5))


def test_class_grid_picture(tmp_path):
    rng = np.random.default_rng(0)
    path = save_class_grid((rng.random((12, 8, 8, 4)), np.repeat(np.arange(3), 4)), str(tmp_path / "g" / "grid.png"),
                           n_classes=8, n_instances=3)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def volume_folder(tmp_path):
    d = tmp_path / "vols"
    d.mkdir()
    for i in range(12):
        np.save(d / f"p{i:02d}.npy", synthetic_chest_ct(SHAPE, seed=20 + i))
    (d / "broken.npy").write_bytes(b"not an npy file")
    (d / "broken.nii.gz").write_bytes(b"\x1f\x8bnot gzip data either")
    return d


_CLI = ["--width", "0.125", "--n_classes", "3", "--n_instances", "4", "--n_instances_val", "2", "--crop", "16,16,8",
        "--feature_shape", "16,16,8", "--border", "3,3,2", "--chunk_classes", "2", "--seed", "1", "--device", "cpu",
        "--quiet"]


def test_discover_skips_corrupt_volumes_and_writes_everything(tmp_path, volume_folder, caplog):
    with caplog.at_level(logging.WARNING):
        s = discover(str(volume_folder), str(tmp_path / "out"), width=0.125, n_classes=3, n_instances=4,
                     n_instances_val=2, crop=CROP, feature_shape=(16, 16, 8), border=(3, 3, 2),
                     chunk_classes=2, seed=1, device="cpu", progress=False)
    skipped = {os.path.basename(x["path"]) for x in s["skipped"]}
    assert skipped == {"broken.npy", "broken.nii.gz"}
    assert "skipping" in caplog.text and "broken.npy" in caplog.text and "broken.nii.gz" in caplog.text
    assert s["training_volumes"] + s["validation_volumes"] == 12 and s["feature_channels"] == 64
    out = tmp_path / "out"
    assert np.load(out / "train_features.npy").shape == (s["training_volumes"], 64)
    assert open(s["picture"], "rb").read(4) == b"\x89PNG"
    assert PatternDataset(find_pattern_files(str(out))["training"]).n_classes == 3


def test_cli_runs_and_resumes(tmp_path, volume_folder, capsys):
    from genesis_monai.__main__ import main

    out = str(tmp_path / "out")
    main(["discover", "--data", str(volume_folder), "--save", out, *_CLI])
    first = capsys.readouterr().out
    assert "classes: 3 x 4" in first and "chunks written: [1, 2]" in first
    main(["discover", "--data", str(volume_folder), "--save", out, *_CLI])
    again = capsys.readouterr().out
    assert "reused" in again and "kept from an earlier run: [1, 2]" in again
    with pytest.raises(SystemExit) as err:
        main(["discover", "--data", str(volume_folder), "--save", str(tmp_path / "o2"), *_CLI[:4],
              "--n_instances", "40", *_CLI[6:]])
    assert err.value.code == 1
    assert "n_instances=40" in capsys.readouterr().err


def test_splits_follow_the_reference_layout_or_a_seeded_fraction(tmp_path):
    from genesis_monai.data.discovery import split_sources

    for sub, n in (("train", 3), ("validation", 2)):
        (tmp_path / "ref" / sub).mkdir(parents=True)
        for i in range(n):
            np.save(tmp_path / "ref" / sub / f"v{i}.npy", np.zeros((4, 4, 4)))
    tr, va, how = split_sources(str(tmp_path / "ref"))
    assert [os.path.basename(p) for p in tr] == ["v0.npy", "v1.npy", "v2.npy"] and len(va) == 2 and "train/" in how
    flat = [str(tmp_path / "ref" / "train" / f"v{i}.npy") for i in range(3)]
    a = split_sources(flat, val_fraction=0.34, seed=2)
    assert a == split_sources(flat, val_fraction=0.34, seed=2) and len(a[1]) == 1 and sorted(a[0] + a[1]) == flat
    tr, va, _ = split_sources(flat[:2], validation_data=flat[2:])
    assert tr == flat[:2] and va == flat[2:]
