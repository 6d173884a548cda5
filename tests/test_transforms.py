"""Genesis degradations: both kernels (vectorised torch, compiled C) against the plain NumPy
oracle (tests/reference_degradations.py, written from METHODS.md) and against the published
sampling laws. Tests taking the ``kernel`` fixture run once per kernel."""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

import reference_degradations as ref
from genesis_monai.transforms import (GenesisDegrade, GenesisDegraded, RandBezierIntensity, RandBezierIntensityd,
                                      RandInPaint, RandInPaintd, RandLocalPixelShuffle, RandLocalPixelShuffled,
                                      RandOutPaint, RandOutPaintd)
from genesis_monai.transforms import cpu_kernel
from genesis_monai.transforms import execution as execution_module
from genesis_monai.transforms import functional as F
from genesis_monai.transforms import shuffle as shuffle_module

CUBE = (64, 64, 32)


@pytest.fixture(params=["torch", "c"])
def kernel(request):
    """Both implementations of every degradation: the tests hold each to the same laws."""
    return request.param


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def position_cube(n: int, spatial=CUBE) -> torch.Tensor:
    """Cubes whose values encode the voxel index (all distinct, in [0, 1))."""
    v = math.prod(spatial)
    return (torch.arange(v, dtype=torch.float64) / v).view(1, 1, *spatial).repeat(n, 1, *([1] * len(spatial)))


# ----------------------------------------------------------------------------------------------
# local pixel shuffling
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("permutations, kernel_name", [("exact", "torch"), ("pool", "torch"), ("exact", "c")])
def test_shuffle_changed_fraction_matches_oracle(permutations, kernel_name):
    x = torch.rand(4, 1, *CUBE, generator=gen(1))
    fast = F.local_pixel_shuffle(x, 10_000, gen(2), permutations=permutations, kernel=kernel_name)
    fast_frac = (fast != x).double().mean(dim=(1, 2, 3, 4)).numpy()
    oracle = ref.local_pixel_shuffle(x[0].numpy(), np.random.default_rng(3))
    oracle_frac = (oracle != x[0].numpy()).mean()
    # METHODS: ~79% of values change on random 64x64x32 cubes; the per-cube spread is ~0.2%
    assert 0.77 < oracle_frac < 0.80
    assert abs(fast_frac.mean() - oracle_frac) < 0.01
    assert fast_frac.std() < 0.01


def test_shuffle_sources_stay_inside_their_block(kernel):
    x = position_cube(2)
    out = F.local_pixel_shuffle(x, 10_000, gen(4), kernel=kernel)
    V = math.prod(CUBE)
    src = torch.round(out.flatten(1) * V).long()  # source voxel index of every output voxel
    dst = torch.arange(V).expand_as(src)
    strides = (CUBE[1] * CUBE[2], CUBE[2], 1)
    for axis, (stride, d) in enumerate(zip(strides, CUBE)):
        delta = (src // stride) % d - (dst // stride) % d
        assert delta.abs().max() < max(1, d // 10), axis  # a block spans at most D//10 per axis
    # every value is one of the originals (a block writes original voxels, nothing else)
    assert torch.isin(out, x).all()


def test_single_block_is_a_permutation(kernel):
    x = torch.rand(64, 1, 20, 20, 10, generator=gen(5))
    out = F.local_pixel_shuffle(x, 1, gen(6), kernel=kernel)
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    changed = (out != x).flatten(1).sum(1)
    assert changed.max() <= 2 * 2 * 1 and changed.sum() > 0  # blocks up to (2, 2, 1) here


def test_shuffle_permutations_are_uniform(kernel):
    # 1 block of 2x2 voxels in a 20x20 image: all 24 permutations of the 4 values equally likely
    n = 6000
    x = torch.rand(n, 1, 20, 20, generator=gen(7))
    out = F.local_pixel_shuffle(x, 1, gen(8), kernel=kernel)
    diff = (out != x).flatten(1)
    counts = {}
    for k in range(0, 5):
        counts[k] = int((diff.sum(1) == k).sum())
    # a 2x2 block has 4 voxels; number of moved voxels of a uniform permutation of 4:
    # 0 moved: 1/24, 2 moved: 6/24, 3 moved: 8/24, 4 moved: 9/24. Blocks of size 1, 1x2, 2x1
    # (each class 1/4) contribute 0 or 2 moved voxels. Check the 3- and 4-moved shares.
    p3 = 0.25 * 8 / 24
    p4 = 0.25 * 9 / 24
    assert abs(counts[3] / n - p3) < 4 * math.sqrt(p3 / n)
    assert abs(counts[4] / n - p4) < 4 * math.sqrt(p4 / n)
    assert counts[1] == 0


def test_shuffle_keeps_channels_together_and_2d(kernel):
    x = torch.rand(3, 2, 40, 30, generator=gen(9))
    x[:, 1] = x[:, 0] * 0.5
    out = F.local_pixel_shuffle(x, 2000, gen(10), kernel=kernel)
    assert out.shape == x.shape
    assert torch.allclose(out[:, 1], out[:, 0] * 0.5)
    assert (out != x).any()


# ----------------------------------------------------------------------------------------------
# Bezier
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lut_size, tol, kernel_name", [(None, 1e-5, "torch"), (16385, 5e-4, "torch"),
                                                       (None, 1e-5, "c")])
def test_bezier_matches_oracle(lut_size, tol, kernel_name):
    points, invert = F.sample_bezier_params(12, gen(11))
    invert[:6] = True
    invert[6:] = False
    x = torch.rand(12, 1, 16, 16, 8, generator=gen(12))
    x[:, 0, 0, 0, 0] = 0.0
    x[:, 0, 0, 0, 1] = 1.0
    out = F.bezier_map(x, points, invert, lut_size=lut_size, kernel=kernel_name)
    for i in range(12):
        expected = ref.bezier_map(x[i].numpy().astype(np.float64), points[i].tolist(), bool(invert[i]))
        assert np.abs(out[i].numpy() - expected).max() < tol


def test_bezier_inversion_law(kernel):
    points, invert = F.sample_bezier_params(4000, gen(13))
    assert abs(invert.double().mean().item() - 0.5) < 0.03
    grid = torch.linspace(0, 1, 257).view(1, 1, 257, 1).expand(40, 1, 257, 1).contiguous()
    out = F.bezier_map(grid, points[:40], invert[:40], kernel=kernel)[:, 0, :, 0]
    assert out.min() >= 0 and out.max() <= 1
    inv, mono = invert[:40], ~invert[:40]
    assert torch.allclose(out[inv, 0], torch.ones(int(inv.sum())), atol=1e-4)
    assert torch.allclose(out[inv, -1], torch.zeros(int(inv.sum())), atol=1e-4)
    assert (out[mono].diff(dim=1) >= -1e-6).all()
    assert torch.allclose(out[mono, 0], torch.zeros(int(mono.sum())), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# painting
# ----------------------------------------------------------------------------------------------

def test_box_count_laws():
    n = 20000
    inp = F.sample_box_counts(n, 0, 5, 0.95, gen(14))
    assert abs((inp == 0).double().mean() - 0.05) < 0.01
    assert abs((inp == 5).double().mean() - 0.95**5) < 0.015
    assert abs(inp.double().mean() - 4.30) < 0.05
    out = F.sample_box_counts(n, 1, 5, 0.95, gen(15))
    assert out.min() == 1 and out.max() == 5
    assert abs(out.double().mean() - 4.52) < 0.05
    one = F.sample_box_counts(100, 1, 1, 0.95, gen(16))
    assert (one == 1).all()
    rng = np.random.default_rng(0)
    oracle = np.array([ref.count_boxes(rng, 0, 5) for _ in range(5000)])
    assert abs(oracle.mean() - inp.double().mean().item()) < 0.1


@pytest.mark.parametrize("kind", ["inpaint", "outpaint"])
def test_box_size_and_position_laws(kind):
    n = 4000
    sampler = F.sample_inpaint_boxes if kind == "inpaint" else F.sample_outpaint_boxes
    corner, size = sampler(CUBE, n, 1, gen(17))
    for axis, d in enumerate(CUBE):
        s, c = size[:, 0, axis], corner[:, 0, axis]
        lo, hi = (d // 6, d // 3) if kind == "inpaint" else (d - 4 * d // 7, d - 3 * d // 7)
        assert s.min() == lo and s.max() == hi  # the whole range is reached, nothing outside
        assert (c >= 3).all() and (c <= d - s - 3).all()
        assert (c == 3).any() and (c == d - s - 3).any()
        counts = torch.bincount(s - lo, minlength=hi - lo + 1).double()
        assert counts.min() > 0.6 * counts.mean()  # roughly uniform


def test_paint_fractions_match_published_and_oracle():
    n = 600
    count = F.sample_box_counts(n, 0, 5, 0.95, gen(18))
    corner, size = F.sample_inpaint_boxes(CUBE, n, 5, gen(19))
    inpaint_frac = F.box_union_mask(CUBE, corner, size, count).double().mean().item()
    count = F.sample_box_counts(n, 1, 5, 0.95, gen(20))
    corner, size = F.sample_outpaint_boxes(CUBE, n, 5, gen(21))
    outpaint_frac = F.box_union_mask(CUBE, corner, size, count).double().mean().item()
    rng = np.random.default_rng(1)
    oracle_in = np.mean([ref.box_mask(CUBE, [ref.inpaint_box(CUBE, rng) for _ in range(ref.count_boxes(rng, 0, 5))]).mean()
                         for _ in range(n)])
    oracle_out = np.mean([ref.box_mask(CUBE, [ref.outpaint_box(CUBE, rng) for _ in range(ref.count_boxes(rng, 1, 5))]).mean()
                          for _ in range(n)])
    assert abs(inpaint_frac - 0.055) < 0.005 and abs(inpaint_frac - oracle_in) < 0.006
    assert abs(outpaint_frac - 0.318) < 0.015 and abs(outpaint_frac - oracle_out) < 0.02


def test_box_union_mask_matches_oracle_boxes():
    corner, size = F.sample_inpaint_boxes(CUBE, 3, 5, gen(22))
    count = torch.tensor([0, 2, 5])
    mask = F.box_union_mask(CUBE, corner, size, count)
    for i in range(3):
        boxes = [(tuple(corner[i, k].tolist()), tuple(size[i, k].tolist())) for k in range(int(count[i]))]
        assert np.array_equal(mask[i].numpy(), ref.box_mask(CUBE, boxes))


def test_paint_touches_only_its_boxes(kernel):
    x = torch.rand(8, 2, 32, 32, 16, generator=gen(23))
    painted, mask = F.in_paint(x, gen(24), kernel=kernel)
    m = mask.unsqueeze(1).expand_as(x)
    assert torch.equal(painted[~m], x[~m])
    assert (painted[m] != x[m]).double().mean() > 0.99
    assert torch.equal(painted[:, 0][mask], painted[:, 1][mask])  # noise shared by channels
    kept, keep = F.out_paint(x, gen(25), kernel=kernel)
    k = keep.unsqueeze(1).expand_as(x)
    assert torch.equal(kept[k], x[k])
    assert (kept[~k] != x[~k]).double().mean() > 0.99
    for t in (painted, kept):
        assert t.min() >= 0 and t.max() < 1


# ----------------------------------------------------------------------------------------------
# flip
# ----------------------------------------------------------------------------------------------

def test_flip_law_and_rules():
    parity = F.flip_parity(20000, 0.4, 3, gen(26))
    assert abs((~parity.any(1)).double().mean() - (0.6 + 0.24 * 0 + 0.096 * (1 / 3))) < 0.015
    assert abs(parity.double().mean(0) - parity.double().mean()).max() < 0.015  # axes alike
    x = torch.rand(64, 1, 8, 8, 4, generator=gen(27))
    _, y, par = F.flip_pair(x, x, 0.9, "reference", gen(28))
    for i in range(64):
        expected = x[i]
        for axis, dim in enumerate([0, 1, 2]):
            if par[i, axis]:
                expected = expected.flip(dim)
        assert torch.equal(y[i], expected)
    _, y2, par2 = F.flip_pair(x, x, 0.9, "spatial", gen(29))
    assert par2.shape[1] == 3 and par2[:, 2].any()  # Z (last axis) does get flipped
    with pytest.raises(ValueError):
        F.flip_pair(x, x, 0.5, "sideways")


# ----------------------------------------------------------------------------------------------
# the batch operator
# ----------------------------------------------------------------------------------------------

def test_genesis_degrade_shapes_range_no_mutation_and_flip_in_both(kernel):
    x = torch.rand(6, 1, 32, 32, 16, generator=gen(30))
    x_copy = x.clone()
    op = GenesisDegrade(flip_rate=0.9, local_rate=0.0, nonlinear_rate=0.0, paint_rate=0.0, flip_rule="spatial",
                        kernel=kernel)
    degraded, target = op(x, generator=gen(31))
    assert torch.equal(x, x_copy)
    assert torch.equal(degraded, target)  # flip only: both outputs flipped alike
    assert not torch.equal(target, x)
    op = GenesisDegrade(kernel=kernel)
    degraded, target = op(x, generator=gen(32))
    assert torch.equal(x, x_copy)
    assert degraded.shape == x.shape and degraded.dtype == x.dtype
    assert degraded.min() >= 0 and degraded.max() <= 1
    # the target is a flip of the original
    for i in range(6):
        assert any(torch.equal(target[i], x[i].flip(dims)) for dims in [(), (1,), (2,), (1, 2)])


def test_genesis_degrade_reproducible_and_per_sample(kernel):
    x = torch.rand(1, 1, 32, 32, 16, generator=gen(33)).repeat(8, 1, 1, 1, 1)
    op = GenesisDegrade(n_blocks=2000, kernel=kernel).set_random_state(7)
    a = op(x)
    op.set_random_state(7)
    b = op(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = op(x)
    assert not torch.equal(a[0], c[0])
    assert torch.equal(GenesisDegrade(kernel=kernel)(x, generator=gen(5))[0],
                       GenesisDegrade(kernel=kernel)(x, generator=gen(5))[0])
    # identical samples get different degradations
    degraded = a[0]
    assert len({degraded[i].sum().item() for i in range(8)}) > 4


def _record_calls(monkeypatch, kernel):
    """Patch the kernels so each call records which samples (tagged by voxel 0) it received: the
    torch executor calls one torch kernel per degradation, the C executor passes per-sample flags."""
    seen = {}
    if kernel == "torch":
        def wrap(attr, name_of):
            fn = getattr(execution_module, attr)

            def inner(v, *args, **kwargs):
                seen.setdefault(name_of(args), []).extend(v[:, 0, 0, 0, 0].tolist())
                return fn(v, *args, **kwargs)
            monkeypatch.setattr(execution_module, attr, inner)

        wrap("shuffle_torch", lambda args: "local_pixel_shuffle")
        wrap("bezier_torch", lambda args: "bezier_map")
        wrap("paint_torch", lambda args: "in_paint" if args[1] == "inside" else "out_paint")  # (mask, fill, g)
        return seen
    bits = {"local_pixel_shuffle": cpu_kernel.SHUFFLE, "bezier_map": cpu_kernel.BEZIER,
            "in_paint": cpu_kernel.INPAINT, "out_paint": cpu_kernel.OUTPAINT}
    real = cpu_kernel.degrade

    def degrade(x, flags, *args, **kwargs):
        for name, bit in bits.items():
            seen.setdefault(name, []).extend(x[(flags & bit) != 0][:, 0, 0, 0, 0].tolist())
        return real(x, flags, *args, **kwargs)
    monkeypatch.setattr(cpu_kernel, "degrade", degrade)
    return seen


def test_one_of_mode_applies_exactly_one(monkeypatch, kernel):
    n = 400
    x = torch.zeros(n, 1, 16, 16, 8)
    x[:, 0, 0, 0, 0] = torch.arange(n) / (2 * n)  # a tag in a voxel no shuffle reaches with 5 blocks... checked below
    seen = _record_calls(monkeypatch, kernel)
    op = GenesisDegrade.from_preset("semantic_genesis", n_blocks=0, kernel=kernel)  # no shuffle blocks: the tag survives
    degraded, target = op(x, generator=gen(34))
    tags = [t for name in seen for t in seen[name]]
    assert sorted(tags) == sorted((torch.arange(n) / (2 * n)).tolist())  # every sample exactly once
    for name in ("local_pixel_shuffle", "bezier_map", "in_paint", "out_paint"):
        assert abs(len(seen[name]) / n - 0.25) < 0.07, name
    assert torch.equal(target, x)  # no flip in the preset


def test_sequential_mode_rates(monkeypatch, kernel):
    n = 2000
    x = torch.rand(n, 1, 12, 12, 6, generator=gen(35))
    seen = _record_calls(monkeypatch, kernel)
    GenesisDegrade(n_blocks=10, kernel=kernel)(x, generator=gen(36))
    frac = {k: len(v) / n for k, v in seen.items()}
    assert abs(frac["local_pixel_shuffle"] - 0.5) < 0.04
    assert abs(frac["bezier_map"] - 0.9) < 0.03
    assert abs(frac["in_paint"] - 0.18) < 0.03
    assert abs(frac["out_paint"] - 0.72) < 0.03


def test_presets_and_validation():
    mg = GenesisDegrade.from_preset("models_genesis")
    assert (mg.mode, mg.n_blocks, mg.max_inpaint_boxes, mg.flip_rate) == ("sequential", 10_000, 5, 0.4)
    for name in ("semantic_genesis", "transvw"):
        sg = GenesisDegrade.from_preset(name)
        assert (sg.mode, sg.n_blocks, sg.min_inpaint_boxes, sg.max_inpaint_boxes, sg.max_outpaint_boxes,
                sg.flip_rate) == ("one_of", 5, 1, 1, 1, 0.0)
    with pytest.raises(ValueError):
        GenesisDegrade.from_preset("nope")
    with pytest.raises(ValueError):
        GenesisDegrade(mode="both")
    with pytest.raises(ValueError):
        GenesisDegrade()(torch.rand(2, 32, 32))
    with pytest.raises(TypeError):
        GenesisDegrade()(torch.ones(1, 1, 8, 8, 8, dtype=torch.long))


def test_genesis_degrade_2d_and_numpy(kernel):
    x = torch.rand(5, 1, 64, 64, generator=gen(37))
    degraded, target = GenesisDegrade(flip_rule="spatial", kernel=kernel, spatial_dims=2)(x, generator=gen(38))
    assert degraded.shape == x.shape and (degraded != target).any()
    d_np, t_np = GenesisDegrade(seed=1, kernel=kernel, spatial_dims=2)(x.numpy())
    assert isinstance(d_np, np.ndarray) and d_np.shape == x.shape


def test_whole_recipe_matches_oracle_statistically(kernel):
    """Mean absolute degradation |degraded - target| per sample: fast vs oracle (fewer blocks to
    keep the oracle quick; the other steps follow the published laws)."""
    n = 48
    x = torch.rand(n, 1, 32, 32, 16, generator=gen(39))
    degraded, target = GenesisDegrade(n_blocks=300, kernel=kernel)(x, generator=gen(40))
    fast = (degraded - target).abs().flatten(1).mean(1).numpy()
    od, ot = ref.reference_batch(x.numpy(), seed=41, n_blocks=300, n_points=4096)
    oracle = np.abs(od - ot).reshape(n, -1).mean(1)
    se = math.sqrt(fast.var() / n + oracle.var() / n)
    assert abs(fast.mean() - oracle.mean()) < 4 * se + 0.01


# ----------------------------------------------------------------------------------------------
# MONAI array / dictionary transforms
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kernel", [
    (RandLocalPixelShuffle, lambda x, g: F.local_pixel_shuffle(x, 10_000, g)),
    (RandBezierIntensity, lambda x, g: F.bezier_map(x, *F.sample_bezier_params(1, g))),
    (RandInPaint, lambda x, g: F.in_paint(x, g)[0]),
    (RandOutPaint, lambda x, g: F.out_paint(x, g)[0]),
])
def test_array_transform_is_the_batch_kernel(cls, kernel):
    img = torch.rand(1, 32, 32, 16, generator=gen(42))
    before = img.clone()
    t = cls(prob=1.0)
    t.set_random_state(123)
    out = t(img)
    rs = np.random.RandomState(123)
    rs.rand()  # the prob draw
    seed = int(rs.randint(0, 2**31 - 1))
    expected = kernel(img.unsqueeze(0), gen(seed))[0]
    assert torch.equal(out, expected)
    assert torch.equal(img, before)
    # kinds are kept
    meta = MetaTensor(img.clone(), meta={"filename_or_obj": "cube.nii.gz"})
    out_meta = t(meta)
    assert isinstance(out_meta, MetaTensor) and out_meta.meta["filename_or_obj"] == "cube.nii.gz"
    out_np = t(img.numpy())
    assert isinstance(out_np, np.ndarray) and out_np.shape == img.shape
    assert cls(prob=0.0)(img) is img


@pytest.mark.parametrize("cls", [RandLocalPixelShuffled, RandBezierIntensityd, RandInPaintd, RandOutPaintd])
def test_dictionary_transforms_share_draws_across_keys(cls):
    img = torch.rand(1, 32, 32, 16, generator=gen(43))
    t = cls(keys=["image", "copy"], prob=1.0)
    t.set_random_state(3)
    d = t({"image": img, "copy": img.clone(), "other": 1})
    assert torch.equal(d["image"], d["copy"]) and not torch.equal(d["image"], img) and d["other"] == 1
    t.set_random_state(3)
    assert torch.equal(t({"image": img, "copy": img})["image"], d["image"])


def test_genesis_degraded_dictionary():
    img = MetaTensor(torch.rand(1, 32, 32, 16, generator=gen(44)), meta={"filename_or_obj": "a"})
    before = img.clone()
    t = GenesisDegraded(keys="image", target_key="target")
    t.set_random_state(9)
    d = t({"image": img})
    assert set(d) == {"image", "target"}
    assert isinstance(d["target"], MetaTensor) and d["target"].meta["filename_or_obj"] == "a"
    assert torch.equal(img, before)
    t.set_random_state(9)
    d2 = t({"image": img})
    assert torch.equal(d["image"], d2["image"]) and torch.equal(d["target"], d2["target"])
    sg = GenesisDegraded(keys="image", preset="semantic_genesis")
    assert sg.degrade.mode == "one_of"


@pytest.mark.parametrize("length", [2, 3, 4, 5, 7, 24])
def test_permutation_rows_are_uniform_permutations(length):
    # both CPU paths of the permutation sampler (flat sort for rows < 5 keys, row-wise sort
    # otherwise) and the torch.sort fallback: every row a permutation, every position uniform
    torch.manual_seed(11)
    n = 12000
    cpu = torch.device("cpu")
    for perm in (ref.permutation_rows(n, length, shuffle_module._permuted_values),
                 shuffle_module._permutation_rows_sorted(n, length, None, cpu)):
        assert torch.equal(perm.sort(1).values, torch.arange(length).expand(n, -1))
        for col in (0, length - 1):
            counts = torch.bincount(perm[:, col], minlength=length).double()
            expected = n / length
            chi2 = float(((counts - expected) ** 2 / expected).sum())
            assert chi2 < length - 1 + 6 * math.sqrt(2 * (length - 1)) + 10
    values = torch.tensor([0, 7, 2048, 2055, 4096])
    out = shuffle_module._permuted_values(1000, values, None, cpu)
    assert torch.equal(out.sort(1).values, values.expand(1000, -1))
