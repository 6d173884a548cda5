"""CLAHE (OpenCV semantics) against the loop-based NumPy oracle in reference_clahe.py, plus its transform API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from genesis_monai.transforms.clahe import CLAHE, CLAHEd, clahe, clahe_levels
from reference_clahe import reference_clahe, reference_clahe_levels


def _structured(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth gradient, a bright disc and a dark band, plus a little noise: head-CT-like contrast in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    img = 0.2 + 0.3 * xx / max(w - 1, 1)
    img[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2] = 0.8
    img[: max(h // 5, 1)] = 0.05
    return np.clip(img + rng.normal(0, 0.02, (h, w)), 0, 1)


CASES = [  # (H, W, tile_grid, clip_limit)
    (32, 32, (8, 8), 2.0),  # divisible, the SMART-Net parameters
    (50, 44, (8, 8), 2.0),  # neither side divisible: reflect-101 padding
    (40, 36, (8, 8), 3.0),  # only W not divisible: OpenCV pads H by a whole tile too
    (5, 6, (8, 8), 2.0),  # image smaller than the grid: repeated reflection
    (24, 30, (3, 5), 0.0),  # no clipping; non-square grid
    (30, 28, (4, 4), 40.0),  # OpenCV's default clip limit
    (33, 29, (2, 3), 1.0),
]


@pytest.mark.parametrize("h, w, grid, clip", CASES)
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_matches_reference_oracle(h, w, grid, clip, kind):
    seed = h * 100 + w
    img = np.random.default_rng(seed).random((h, w)) if kind == "random" else _structured(h, w, seed)
    expected = reference_clahe(img, clip, grid[0], grid[1])
    got = CLAHE(clip_limit=clip, tile_grid=grid)(torch.as_tensor(img, dtype=torch.float32)[None])[0].numpy()
    # the float32 steps follow the same order of operations: level for level equal
    np.testing.assert_array_equal(got, expected)


def test_levels_match_oracle_with_other_bins_and_batch():
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 16, size=(3, 21, 19))
    got = clahe_levels(torch.from_numpy(levels), clip_limit=1.5, tile_grid=(3, 2), bins=16).numpy()
    for i in range(3):  # each image of the batch on its own
        np.testing.assert_array_equal(got[i], reference_clahe_levels(levels[i], 1.5, 3, 2, bins=16))


def test_constant_image_matches_oracle_and_stays_constant():
    img = np.full((24, 24), 0.4)
    got = CLAHE()(torch.full((1, 24, 24), 0.4))[0].numpy()
    np.testing.assert_array_equal(got, reference_clahe(img))
    assert np.unique(got).size == 1


def test_single_tile_without_clipping_is_global_histogram_equalisation():
    """Independent of the oracle: one tile, no clip -> every pixel maps to round(255 * cdf(level) / N)."""
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 256, size=(17, 23))
    cdf = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    expected = np.rint(cdf[levels] * (np.float32(255) / np.float32(levels.size))).astype(np.int64)
    got = clahe_levels(torch.from_numpy(levels)[None], clip_limit=0.0, tile_grid=(1, 1))[0].numpy()
    np.testing.assert_array_equal(got, expected)


def test_quantisation_is_round_x_times_255():
    levels = np.random.default_rng(6).integers(0, 256, size=(16, 16))
    expected = reference_clahe_levels(levels).astype(np.float32) / np.float32(255)
    for offset in (-0.4, 0.0, 0.4):  # round(x * 255) gives back the level; floor would not for -0.4
        x = torch.from_numpy(np.clip((levels + offset) / 255.0, 0, 1))[None]
        np.testing.assert_array_equal(clahe(x)[0].numpy(), expected)


def test_volume_equals_slice_by_slice_and_channels_are_independent():
    rng = np.random.default_rng(7)
    vol = torch.from_numpy(rng.random((2, 20, 18, 4))).float()
    vol[1] = vol[1] ** 3  # a different histogram in the second channel
    out = CLAHE(clip_limit=2.0, tile_grid=(4, 4))(vol)
    assert out.shape == vol.shape and out.dtype == torch.float32
    for c in range(2):
        for k in range(4):
            single = CLAHE(clip_limit=2.0, tile_grid=(4, 4))(vol[c:c + 1, :, :, k])
            torch.testing.assert_close(out[c:c + 1, :, :, k], single, rtol=0, atol=0)


def test_output_kind_dtype_meta_and_range():
    arr = np.random.default_rng(8).random((1, 16, 16))  # float64 numpy
    out = CLAHE()(arr)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == arr.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    meta = MetaTensor(torch.from_numpy(arr).float(), meta={"filename_or_obj": "slice.nii.gz"})
    mout = CLAHE()(meta)
    assert isinstance(mout, MetaTensor) and mout.meta["filename_or_obj"] == "slice.nii.gz"
    np.testing.assert_array_equal(mout.numpy(), out)
    assert not np.array_equal(out, arr.astype(np.float32))  # it did change the image


def test_dictionary_transform_and_errors_name_the_key():
    img = torch.rand(1, 16, 16)
    d = CLAHEd(keys="image")({"image": img, "label": torch.ones(1, 16, 16)})
    torch.testing.assert_close(d["image"], CLAHE()(img))
    assert torch.equal(d["label"], torch.ones(1, 16, 16))
    with pytest.raises(ValueError, match=r"CLAHEd key 'image'.*\[0, 1\].*max 80"):
        CLAHEd(keys="image")({"image": torch.full((1, 16, 16), 80.0)})
    with pytest.raises(ValueError, match=r"CLAHEd key 'image'.*\(C, H, W\)"):
        CLAHEd(keys="image")({"image": torch.rand(16, 16)})


def test_range_check_and_clipping():
    img = torch.rand(1, 16, 16) * 1.5 - 0.25
    with pytest.raises(ValueError, match="check_range=False"):
        CLAHE()(img)
    nan = torch.rand(1, 8, 8)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        CLAHE()(nan)
    torch.testing.assert_close(CLAHE(check_range=False)(img), CLAHE()(img.clamp(0, 1)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="floating-point"):
        CLAHE()(torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="tile_grid"):
        CLAHE(tile_grid=(0, 8))
    with pytest.raises(ValueError, match="bins"):
        CLAHE(bins=1)
    with pytest.raises(ValueError, match="integer"):
        clahe_levels(torch.zeros(1, 8, 8))


def test_against_opencv_when_installed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(9)
    for h, w, grid, clip in CASES:
        img = (rng.random((h, w)) * 255).astype(np.uint8)
        expected = cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid[1], grid[0])).apply(img)
        got = clahe_levels(torch.from_numpy(img.astype(np.int64))[None], clip, grid)[0].numpy()
        assert np.abs(got - expected.astype(np.int64)).max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    vol = torch.rand(1, 96, 80, 6)
    torch.testing.assert_close(CLAHE()(vol.cuda()).cpu(), CLAHE()(vol), rtol=0, atol=0)
