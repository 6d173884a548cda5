"""The Semantic Genesis / TransVW pattern layout (as in the published TransVW_data.zip) and PatternDataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genesis_monai.data.pattern_files import PatternDataset, find_pattern_files, pattern_file_name, write_pattern_files


def _chunk(rng, classes, per_class, shape=(8, 8, 8)):
    labels = np.repeat(np.asarray(classes), per_class)
    return rng.random((len(labels), *shape)), labels


@pytest.fixture
def layout(tmp_path):
    """Two 'chunks' of classes (the reference writes 50 per chunk), 3 training resolutions, validation at 1."""
    rng = np.random.default_rng(0)
    for part, classes in ((1, [0, 1, 2]), (2, [3, 4])):
        for res in (1, 2, 3):
            write_pattern_files(str(tmp_path), "train", res, part, *_chunk(rng, classes, 4))
        write_pattern_files(str(tmp_path), "val", 1, part, *_chunk(rng, classes, 2))
    return tmp_path


def test_reference_names_and_dtypes(layout):
    assert pattern_file_name("train", "data", 2, 1) == "train_data2_vwGen_ex_ref_fold1.0.npy"
    lab = np.load(layout / "val_label1_vwGen_ex_ref_fold2.0.npy")
    assert lab.shape == (4, 1) and lab.dtype == np.float64
    assert np.load(layout / "train_data1_vwGen_ex_ref_fold1.0.npy").dtype == np.float64


def test_files_are_found_in_reference_order_and_round_trip(layout):
    files = find_pattern_files(str(layout))
    assert [(r["part"], r["resolution"]) for r in files["training"]] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert [(r["part"], r["resolution"]) for r in files["validation"]] == [(1, 1), (2, 1)]
    ds = PatternDataset(files["training"])
    assert len(ds) == 3 * 5 * 4 and ds.n_classes == 5 and ds.class_counts.tolist() == [12] * 5
    item = ds[0]
    assert item["image"].shape == (1, 8, 8, 8) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 0
    expected = np.load(layout / "train_data1_vwGen_ex_ref_fold1.0.npy")[0].astype(np.float32)
    np.testing.assert_array_equal(item["image"][0].numpy(), expected)
    only1 = find_pattern_files(str(layout), resolutions=[1])["training"]
    assert [r["resolution"] for r in only1] == [1, 1]


def test_first_n_classes_are_kept(layout):
    ds = PatternDataset(find_pattern_files(str(layout))["training"], n_classes=4)
    assert ds.n_classes == 4 and len(ds) == 3 * 4 * 4
    assert {int(ds[i]["label"]) for i in range(len(ds))} == {0, 1, 2, 3}


def test_bad_inputs_name_the_problem(layout, tmp_path_factory):
    files = find_pattern_files(str(layout))
    with pytest.raises(ValueError, match=r"n_classes=9 .*classes 0\.\.4"):
        PatternDataset(files["training"], n_classes=9)
    (layout / "train_label2_vwGen_ex_ref_fold2.0.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no label file"):
        find_pattern_files(str(layout))
    other = tmp_path_factory.mktemp("bad")
    write_pattern_files(str(other), "train", 1, 1, np.random.rand(3, 8, 8, 8), np.array([0, 1, 1]))
    np.save(other / "train_label1_vwGen_ex_ref_fold1.0.npy", np.array([[0.0], [1.5], [1.0]]))
    with pytest.raises(ValueError, match="non-negative integers"):
        PatternDataset(find_pattern_files(str(other))["training"])
    np.save(other / "train_label1_vwGen_ex_ref_fold1.0.npy", np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="holds 2 labels but"):
        PatternDataset(find_pattern_files(str(other))["training"])


def test_pickles_for_workers(layout):
    import pickle

    ds = PatternDataset(find_pattern_files(str(layout))["validation"])
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[3]["image"], ds[3]["image"])
