"""Pictures: each function writes a valid PNG atomically and rejects bad shapes clearly."""

import os

import numpy as np
import pytest
import torch

from genesis_monai import viz
from genesis_monai.io_utils import PARTIAL_SUFFIX

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_png(path):
    import matplotlib.image as mpimg

    assert os.path.isfile(path) and os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def _no_temp_files(folder):
    return not [f for f in os.listdir(folder) if f.endswith(PARTIAL_SUFFIX) or ".tmp" in f]


def _batch(n=3, shape=(16, 16, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, *shape), generator=g)


def test_degradation_montage_3d_tensors(tmp_path):
    original = _batch()
    degraded = 1.0 - original
    restored = original.clone().requires_grad_(True) * 0.5  # grad-carrying output, as from a network
    path = viz.save_degradation_montage(original, degraded, restored, path=tmp_path / "sub" / "m.png", n=2,
                                        title="epoch 1")
    assert path == str(tmp_path / "sub" / "m.png")
    img = _read_png(path)
    # three columns wider than tall for two rows of square cells
    assert img.shape[1] > img.shape[0] * 0.9
    assert _no_temp_files(tmp_path / "sub")


def test_degradation_montage_2d_numpy_without_restored(tmp_path):
    original = np.random.default_rng(0).random((2, 1, 20, 12)).astype(np.float32)
    path = viz.save_degradation_montage(original, original[::-1].copy(), path=str(tmp_path / "m2.png"))
    _read_png(path)


def test_degradation_montage_content_changes_with_input(tmp_path):
    x = _batch(n=1)
    a = viz.save_degradation_montage(x, x, path=tmp_path / "a.png")
    b = viz.save_degradation_montage(x, torch.zeros_like(x), path=tmp_path / "b.png")
    assert not np.array_equal(_read_png(a), _read_png(b))


def test_degradation_montage_bad_shapes(tmp_path):
    x = _batch()
    with pytest.raises(ValueError, match="one channel"):
        viz.save_degradation_montage(x[:, 0], x[:, 0], path=tmp_path / "bad.png")  # (N, X, Y, Z) without channel
    with pytest.raises(ValueError, match="shape"):
        viz.save_degradation_montage(x[0, 0, 0], x[0, 0, 0], path=tmp_path / "bad.png")  # 2D
    with pytest.raises(ValueError, match="degraded"):
        viz.save_degradation_montage(x, x[:, :, :8], path=tmp_path / "bad.png")
    with pytest.raises(ValueError, match="restored"):
        viz.save_degradation_montage(x, x, x[:2], path=tmp_path / "bad.png")
    with pytest.raises(ValueError, match="n must"):
        viz.save_degradation_montage(x, x, path=tmp_path / "bad.png", n=0)
    assert not os.path.exists(tmp_path / "bad.png")


def test_learning_curves_pairs_and_values(tmp_path):
    curves = {
        "pretrained val Dice": [(2, 0.1), (4, 0.3), (6, 0.45)],
        "scratch val Dice": [0.05, 0.1, 0.2, float("nan"), 0.3],
        "not yet": [],
    }
    path = viz.save_learning_curves(curves, tmp_path / "c.png", title="Dice", ylabel="Dice")
    _read_png(path)
    _read_png(viz.save_learning_curves({}, tmp_path / "empty.png"))
    _read_png(viz.save_learning_curves({"loss": np.array([3.0, 2.0, 1.5])}, tmp_path / "np.png"))
    assert _no_temp_files(tmp_path)


def test_curve_points_parsing():
    x, y = viz._curve_points("a", [(1, 0.5), (3, 0.25)])
    np.testing.assert_array_equal(x, [1, 3])
    np.testing.assert_array_equal(y, [0.5, 0.25])
    x, y = viz._curve_points("b", [0.5, 0.25, 0.125])
    np.testing.assert_array_equal(x, [1, 2, 3])


def test_learning_curves_bad_input(tmp_path):
    with pytest.raises(ValueError, match="dict"):
        viz.save_learning_curves([(1, 2)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'mixed'"):
        viz.save_learning_curves({"mixed": [1.0, (2, 3)]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'triples'"):
        viz.save_learning_curves({"triples": [(1, 2, 3)]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'scalar'"):
        viz.save_learning_curves({"scalar": 3.0}, tmp_path / "x.png")


def _volume_with_blob(shape=(24, 20, 10), z=7):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[8:14, 6:12, z - 1:z + 2] = 1
    label[6:16, 4:14, z] = 1  # the largest cross-section
    label[2:4, 2:4, 1] = 1  # a smaller spot elsewhere
    return image, label


def test_overlay_writes_png(tmp_path):
    image, label = _volume_with_blob()
    pred = np.roll(label, 2, axis=0)
    path = viz.save_overlay(image, label, pred, tmp_path / "o.png", title="case 0")
    _read_png(path)
    # tensors with batch/channel dims, HU with a window, no prediction
    hu = torch.from_numpy(image * 2000 - 1000)[None, None]
    _read_png(viz.save_overlay(hu, torch.from_numpy(label)[None], None, tmp_path / "o2.png", window=(-1000, 1000)))
    # empty masks and an explicit slice
    _read_png(viz.save_overlay(image, np.zeros_like(label), np.zeros_like(label), tmp_path / "o3.png", slice_index=-1))
    assert _no_temp_files(tmp_path)


def test_overlay_picks_slice_with_most_label():
    image, label = _volume_with_blob(z=7)
    assert viz._pick_slice([label > 0], label.shape[2]) == 7
    assert viz._pick_slice([np.zeros_like(label), label > 0], label.shape[2]) == 7
    assert viz._pick_slice([np.zeros_like(label)], label.shape[2]) == label.shape[2] // 2


def test_overlay_bad_input(tmp_path):
    image, label = _volume_with_blob()
    with pytest.raises(ValueError, match="label has shape"):
        viz.save_overlay(image, label[:, :, :5], None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="3D volume"):
        viz.save_overlay(image[:, :, 0], None, None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="slice_index"):
        viz.save_overlay(image, label, None, tmp_path / "x.png", slice_index=10)
    with pytest.raises(ValueError, match="window"):
        viz.save_overlay(image, label, None, tmp_path / "x.png", window=(5, 5))
    assert not os.path.exists(tmp_path / "x.png")


def test_existing_picture_is_replaced(tmp_path):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    viz.save_learning_curves({"a": [1.0, 2.0]}, target)
    _read_png(str(target))
