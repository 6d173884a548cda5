"""Cube extraction core: the vectorised rejection rule against the literal per-voxel oracle."""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_cubes import reference_extract, reference_reject, reference_score  # noqa: E402

from genesis_monai.benchmarks.cubes import synthetic_chest_ct  # noqa: E402
from genesis_monai.data.cubes import (  # noqa: E402
    VolumeTooSmallError,
    corner_ranges,
    crop_scores,
    draw_corners,
    extract_cubes,
    intensity_window,
    normalise_intensity,
    rejection_decisions,
)

SMALL = dict(crop=(16, 16, 8), border=(4, 4, 2))


def _rand_crops(rng, k, shape, density):
    """Crops whose dense fraction varies per crop (straddling the 0.15 limit), values in [0, 1]."""
    frac = rng.uniform(0, density, size=(k, 1, 1, 1))
    dense = rng.random((k, *shape)) < frac
    low = rng.uniform(0.0, 0.42, size=(k, *shape))
    high = rng.uniform(0.425, 1.0, size=(k, *shape))
    return np.where(dense, high, low)


def test_rule_matches_oracle_on_random_crops():
    rng = np.random.default_rng(0)
    crops = _rand_crops(rng, 60, (8, 8, 9), density=0.35)  # deps 6 + len_depth 3
    ours = rejection_decisions(crops, 0.425, 0.15, deps=6, len_depth=3)
    ref = np.array([reference_reject(c, 0.425, 0.15, deps=6, len_depth=3) for c in crops])
    assert ours.dtype == bool and ours.shape == (60,)
    assert 5 < ref.sum() < 55, "the random crops should straddle the limit"
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(crop_scores(crops, 0.425, deps=6),
                                  [reference_score(c, 0.425, 6) for c in crops])


@pytest.mark.parametrize("len_depth", [1, 2, 3, 4])
def test_scores_match_oracle_for_each_look_ahead(len_depth):
    rng = np.random.default_rng(len_depth)
    crops = _rand_crops(rng, 12, (6, 5, 7 + len_depth), density=0.6)
    np.testing.assert_array_equal(crop_scores(crops, 0.425, deps=7, len_depth=len_depth),
                                  [reference_score(c, 0.425, 7, len_depth) for c in crops])


def test_rule_matches_oracle_on_structured_crops():
    deps, ld = 8, 3
    crops = []
    for z in range(deps + ld):  # one dense slice at each depth: scores 1, 0.5 or 0 per voxel
        c = np.zeros((8, 8, deps + ld))
        c[:, :, z] = 1.0
        crops.append(c)
    checker = (np.indices((8, 8, deps + ld)).sum(0) % 2).astype(float)
    crops += [checker, 1 - checker, np.full((8, 8, deps + ld), 0.425), np.full((8, 8, deps + ld), 0.4249999)]
    # exactly at the limit (not rejected: the rule is strict) and one half-voxel above it
    limit = 0.15 * 8 * 8 * deps  # 76.8
    for target in (76.5, 77.0):  # multiples of 0.5 just below / above 76.8
        c = np.zeros((8, 8, deps + ld))
        full = int(target)
        flat = c[:, :, :deps].reshape(-1)
        flat[:full] = 1.0
        c[:, :, :deps] = flat.reshape(8, 8, deps)
        if target % 1:  # one voxel scoring 0.5: dense in slice deps (the look-ahead) under a light voxel
            c[7, 7, deps] = 1.0
        crops.append(c)
    crops = np.stack(crops)
    ours = rejection_decisions(crops, 0.425, 0.15, deps=deps, len_depth=ld)
    ref = np.array([reference_reject(c, 0.425, 0.15, deps, ld) for c in crops])
    np.testing.assert_array_equal(ours, ref)
    assert ref[-2] == (76.5 > limit) and ref[-1] == (77.0 > limit)
    assert not ref[-2] and ref[-1]


def test_limit_is_strict_like_the_reference():
    # 8x8x10 cube: 0.15 * 640 = 96.0 exactly; a score of 96 is kept, 96.5 rejected
    deps, ld = 10, 3
    crops = np.zeros((3, 8, 8, deps + ld))
    for c, (full, half) in zip(crops, [(96, 0), (96, 1), (95, 2)]):  # scores 96, 96.5, 96
        flat = np.zeros(8 * 8 * deps)
        flat[:full] = 1.0
        c[:, :, :deps] = flat.reshape(8, 8, deps)
        for h in range(half):  # light voxel in the last scored slice, dense look-ahead: 0.5 each
            c[7, h, deps] = 1.0
    ref = [reference_reject(c, 0.425, 0.15, deps, ld) for c in crops]
    assert ref == [False, True, False]
    assert rejection_decisions(crops, 0.425, 0.15, deps=deps, len_depth=ld).tolist() == ref
    assert crop_scores(crops, 0.425, deps).tolist() == [96.0, 96.5, 96.0]


def test_full_size_crop_matches_oracle():
    vol = synthetic_chest_ct((288, 288, 100), seed=3)
    low, high = corner_ranges(vol.shape)
    corners = draw_corners(np.random.default_rng(0), 2, low, high)
    norm = normalise_intensity(vol, -1000, 1000).astype(np.float64)
    for x, y, z in corners:
        crop = norm[x:x + 64, y:y + 64, z:z + 35]
        assert rejection_decisions(crop, 0.425, 0.15)[0] == reference_reject(crop)
        assert crop_scores(crop, 0.425, 32)[0] == reference_score(crop, 0.425, 32)


@pytest.mark.parametrize("method", ["gather", "table", "auto"])
def test_extract_equals_oracle_on_same_candidates(method):
    vol = synthetic_chest_ct((72, 72, 40), seed=1)
    kw = dict(scale=6, **SMALL, lung_max=0.3)
    cubes, info = extract_cubes(vol, seed=5, method=method, return_info=True, **kw)
    low, high = corner_ranges(vol.shape, crop=SMALL["crop"], border=SMALL["border"])
    corners = draw_corners(np.random.default_rng(5), 50 * 6, low, high)
    ref, taken = reference_extract(vol, corners, 6, crop=SMALL["crop"], lung_max=0.3)
    assert 0 < len(ref) <= 6
    np.testing.assert_array_equal(info["corners"], corners[taken])
    assert cubes.shape == ref.shape and cubes.dtype == np.float32
    np.testing.assert_allclose(cubes, ref, atol=1e-6)
    assert info["tries"] == (taken[-1] + 1 if len(taken) == 6 else 300)


def test_auto_switches_to_table_and_agrees():
    # a strict limit: few candidates pass, the gathers reach the table's cost and "auto" switches
    vol = synthetic_chest_ct((64, 64, 40), seed=2)
    kw = dict(scale=4, crop=(16, 16, 8), border=(2, 2, 2), lung_max=0.0, tries_factor=200)
    a, ia = extract_cubes(vol, seed=0, method="auto", return_info=True, **kw)
    g, ig = extract_cubes(vol, seed=0, method="gather", return_info=True, **kw)
    assert ia["method"] == "table" and ig["method"] == "gather" and len(a) >= 1
    np.testing.assert_array_equal(ia["corners"], ig["corners"])
    np.testing.assert_array_equal(a, g)


def test_cube_values_shapes_and_determinism():
    vol = synthetic_chest_ct((80, 80, 48), seed=0)
    kw = dict(scale=5, crop=(32, 32, 16), border=(4, 4, 2), lung_max=0.5)
    a = extract_cubes(vol, seed=1, **kw)
    b = extract_cubes(torch.from_numpy(vol.astype(np.float32)), seed=1, **kw)  # torch input, float
    c = extract_cubes(vol, seed=2, **kw)
    assert a.shape == (5, 32, 32, 16) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # each cube is the clipped, scaled HU of its crop
    _, info = extract_cubes(vol, seed=1, return_info=True, **kw)
    x, y, z = info["corners"][0]
    expected = (np.clip(vol[x:x + 32, y:y + 32, z:z + 16], -1000, 1000) + 1000) / 2000.0
    np.testing.assert_allclose(a[0], expected, atol=1e-6)
    # accepted cubes obey the rule
    assert np.all(crop_scores(np.stack([vol[x:x + 32, y:y + 32, z:z + 19] for x, y, z in info["corners"]]),
                              -150, 16) <= 0.5 * 32 * 32 * 16)


def test_corner_ranges_are_the_reference_bounds():
    low, high = corner_ranges((512, 512, 120))
    np.testing.assert_array_equal(low, [100, 100, 30])
    np.testing.assert_array_equal(high, [512 - 64 - 1 - 100, 512 - 64 - 1 - 100, 120 - 32 - 3 - 1 - 30])
    corners = draw_corners(np.random.default_rng(0), 20000, low, high)
    assert corners.min(0).tolist() == low.tolist() and corners.max(0).tolist() == high.tolist()
    # batching does not change the candidate stream
    rng = np.random.default_rng(3)
    parts = np.concatenate([draw_corners(rng, k, low, high) for k in (1, 7, 30)])
    np.testing.assert_array_equal(parts, draw_corners(np.random.default_rng(3), 38, low, high))


def test_too_small_volume_says_why():
    with pytest.raises(VolumeTooSmallError, match=r"needs at least \(265, 265, 96\)"):
        extract_cubes(np.zeros((512, 512, 95), np.int16))  # the reference skipped < 96 slices
    extract_cubes(np.full((512, 512, 96), -1000, np.int16), scale=1)  # 96 slices are enough
    with pytest.raises(VolumeTooSmallError, match="border"):
        extract_cubes(np.zeros((128, 128, 64), np.int16))
    assert extract_cubes(np.full((128, 128, 64), -1000, np.int16), scale=2, border=(8, 8, 4)).shape == (2, 64, 64, 32)
    with pytest.raises(ValueError, match="3D"):
        extract_cubes(np.zeros((64, 64)))


def test_rules_off_and_tissue():
    vol = synthetic_chest_ct((72, 72, 40), seed=4)
    kw = dict(scale=8, **SMALL)
    lung = extract_cubes(vol, seed=0, rule="lung", lung_max=0.2, **kw)
    tissue = extract_cubes(vol, seed=0, rule="tissue", tissue_min=0.8, **kw)
    off, info = extract_cubes(vol, seed=0, rule="off", return_info=True, **kw)
    assert len(off) == 8 and info["tries"] == 8
    # lung cubes are mostly light, tissue cubes mostly dense (0.425 = -150 HU)
    assert np.mean(lung >= 0.425) < 0.2 < 0.75 < np.mean(tissue >= 0.425)
    # an all-air volume: the lung rule accepts everything, the tissue rule nothing
    air = np.full((40, 40, 24), -1000, np.int16)
    assert len(extract_cubes(air, scale=3, rule="lung", **SMALL)) == 3
    empty, info = extract_cubes(air, scale=3, rule="tissue", return_info=True, **SMALL)
    assert empty.shape == (0, 16, 16, 8) and info["tries"] == 150 and info["score_range"] == (0.0, 0.0)


def test_mri_normalisations():
    rng = np.random.default_rng(0)
    mri = rng.uniform(0, 1500, size=(40, 40, 24)).astype(np.float32)
    mri[:, :, :4] = 5000  # above the fixed window: clipped to 1
    fixed, info = extract_cubes(mri, scale=4, modality="mri", seed=0, rule="off", return_info=True, **SMALL)
    raw = np.stack([mri[x:x + 16, y:y + 16, z:z + 8] for x, y, z in info["corners"]])
    np.testing.assert_allclose(fixed, np.clip(raw, 0, 4000) / 4000, atol=1e-6)
    assert intensity_window(mri, "mri") == (0.0, 4000.0)
    assert intensity_window(mri, "mri", mri_normalization="minmax") == (float(mri.min()), 5000.0)
    assert intensity_window(mri, "mri_minmax") == (float(mri.min()), 5000.0)
    assert intensity_window(mri, "mri", mri_window=(0, 1000)) == (0.0, 1000.0)
    mm = extract_cubes(mri, scale=4, modality="mri_minmax", seed=0, rule="off", **SMALL)
    np.testing.assert_allclose(mm, (raw - mri.min()) / (5000 - mri.min()), atol=1e-6)
    # MRI default rule "tissue" keeps foreground: a dark background volume with one bright block
    vol = np.zeros((40, 40, 24), np.float32)
    vol[4:20, 4:20, 2:14] = 800.0
    cubes = extract_cubes(vol, scale=2, modality="mri", mri_normalization="minmax", seed=0, **SMALL)
    assert len(cubes) == 2 and all(np.mean(c > 0.5) >= 0.5 for c in cubes)
    with pytest.raises(ValueError, match="constant"):
        extract_cubes(np.ones((40, 40, 24)), modality="mri_minmax", **SMALL)


def test_normalise_intensity_range():
    x = np.array([-3000, -1000, -150, 0, 1000, 4000], dtype=np.int16)
    np.testing.assert_allclose(normalise_intensity(x, -1000, 1000), [0, 0, 0.425, 0.5, 1, 1], atol=1e-7)
    y = normalise_intensity(np.linspace(-1e4, 1e4, 1001), -0.1, 0.3)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0


def test_benchmark_baseline_agrees_with_the_oracle():
    # the benchmark's own reference-style loop and the tests' oracle: same cubes, same accepted candidates
    from genesis_monai.benchmarks.reference_loop import reference_loop_extract

    vol = synthetic_chest_ct((40, 40, 24), seed=4)
    crop = (8, 8, 4)
    low, high = corner_ranges(vol.shape, crop=crop, border=(2, 2, 2))
    corners = draw_corners(np.random.default_rng(0), 120, low, high)
    for lung_max in (0.1, 0.3, 0.6):
        base, base_taken = reference_loop_extract(vol, corners, 5, crop=crop, lung_max=lung_max)
        ref, ref_taken = reference_extract(vol, corners, 5, crop=crop, lung_max=lung_max)
        assert base_taken == ref_taken
        np.testing.assert_array_equal(base, ref)


def test_options_object_and_keywords_give_the_same_cubes():
    from genesis_monai.data.extraction_options import ExtractionOptions

    vol = synthetic_chest_ct((72, 72, 40), seed=1)
    opts = ExtractionOptions(scale=4, crop=(16, 16, 8), border=(4, 4, 2), lung_max=0.3)
    a = extract_cubes(vol, seed=3, options=opts)
    b = extract_cubes(vol, seed=3, scale=4, crop=(16, 16, 8), border=(4, 4, 2), lung_max=0.3)
    c = extract_cubes(vol, seed=3, options=opts.replace(scale=99), scale=4)  # explicit scale wins
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match=r"unknown cube extraction option.*'lungmax'"):
        extract_cubes(vol, lungmax=0.2)
    with pytest.raises(ValueError, match="unknown rule 'lungs'"):
        extract_cubes(vol, rule="lungs")
