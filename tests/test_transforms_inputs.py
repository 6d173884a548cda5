"""Bad input to the degradations: values outside [0, 1] or NaN, and batches or samples of the
wrong rank, give a clear ValueError (what was found, what was expected, what to do); the
``check_range=False`` opt-out works; the range check is one pass per batch."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from genesis_monai.transforms import (GenesisDegrade, GenesisDegraded, RandBezierIntensity, RandBezierIntensityd,
                                      RandInPaint, RandInPaintd, RandLocalPixelShuffle, RandLocalPixelShuffled,
                                      RandOutPaint, RandOutPaintd, cpu_kernel, validation)
from genesis_monai.transforms import functional as F

ARRAY = [RandLocalPixelShuffle, RandBezierIntensity, RandInPaint, RandOutPaint]
DICT = [RandLocalPixelShuffled, RandBezierIntensityd, RandInPaintd, RandOutPaintd]


@pytest.fixture(params=["torch", "c"])
def kernel(request):
    if request.param == "c" and not cpu_kernel.available():
        pytest.skip("compiled CPU kernel unavailable here")
    return request.param


def cube(n: int = 2, spatial=(16, 16, 8), low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, 1, *spatial, generator=torch.Generator().manual_seed(0))


def hu_cube(n: int = 2) -> torch.Tensor:
    """Unscaled CT: the mistake the range check is for."""
    x = cube(n, low=-1000.0, high=1000.0)
    x[0, 0, 0, 0, 0], x[-1, 0, -1, -1, -1] = -1000.0, 1000.0
    return x


# ----------------------------------------------------------------------------------------------
# value range
# ----------------------------------------------------------------------------------------------

def test_genesis_degrade_rejects_unscaled_ct_naming_min_max_and_the_fix(kernel):
    with pytest.raises(ValueError) as err:
        GenesisDegrade(kernel=kernel)(hu_cube())
    msg = str(err.value)
    assert "found min -1000, max 1000" in msg
    assert "expected range [0, 1]" in msg
    assert "-1000..1000 HU" in msg and "check_range=False" in msg


@pytest.mark.parametrize("bad, found", [(1.5, "max 1.5"), (-0.25, "min -0.25"), (float("inf"), "max inf")])
def test_genesis_degrade_rejects_values_just_outside(kernel, bad, found):
    x = cube()
    x[1, 0, 3, 4, 5] = bad  # one voxel of the last sample is enough
    with pytest.raises(ValueError, match=found):
        GenesisDegrade(kernel=kernel)(x)


def test_genesis_degrade_rejects_nan(kernel):
    x = cube()
    x[1, 0, 2, 2, 2] = float("nan")
    with pytest.raises(ValueError) as err:
        GenesisDegrade(kernel=kernel)(x)
    msg = str(err.value)
    assert "1 NaN value(s)" in msg and "expected range [0, 1]" in msg
    assert "the other values min" in msg  # the finite part is still described


def test_range_edges_are_accepted(kernel):
    x = cube()
    x[0, 0, 0, 0, 0], x[1, 0, 1, 1, 1] = 0.0, 1.0
    degraded, _ = GenesisDegrade(kernel=kernel, n_blocks=10)(x)
    assert degraded.shape == x.shape


def test_check_range_false_lets_out_of_range_input_through(kernel):
    x = hu_cube()
    degraded, target = GenesisDegrade(kernel=kernel, n_blocks=10, check_range=False,
                                      paint_rate=0.0, nonlinear_rate=0.0)(x, generator=torch.Generator().manual_seed(1))
    assert degraded.shape == x.shape and target.abs().max() == 1000.0


@pytest.mark.parametrize("tensor", ["non-contiguous", "float16", "numpy", "meta-tensor"])
def test_range_check_covers_every_input_kind(tensor):
    x = hu_cube()
    if tensor == "non-contiguous":
        x = x.transpose(2, 3)  # takes the torch.aminmax path, not the compiled check
    elif tensor == "float16":
        x = (x / 500.0).half()
    elif tensor == "numpy":
        x = x.numpy()
    else:
        x = MetaTensor(x)
    with pytest.raises(ValueError, match=r"expected range \[0, 1\]"):
        GenesisDegrade()(x)


def test_range_check_is_one_pass_per_batch(monkeypatch, kernel):
    calls = []
    real = validation.check_range
    monkeypatch.setattr(validation, "check_range", lambda x, name="x": calls.append(tuple(x.shape)) or real(x, name))
    x = cube(8)
    GenesisDegrade(kernel=kernel, n_blocks=10)(x)
    assert calls == [tuple(x.shape)]  # the whole batch once, not once per sample or per step


def _paint_boxes(x, **kw):
    count = F.sample_box_counts(x.shape[0], 1, 1)
    corner, size = F.sample_inpaint_boxes(x.shape[2:], x.shape[0], 1)
    return F.paint_boxes(x, count, corner, size, **kw)[0]


@pytest.mark.parametrize("fn", [
    lambda x, **kw: F.local_pixel_shuffle(x, 10, **kw),
    lambda x, **kw: F.bezier_map(x, *F.sample_bezier_params(x.shape[0]), **kw),
    lambda x, **kw: F.in_paint(x, **kw)[0],
    lambda x, **kw: F.out_paint(x, **kw)[0],
    lambda x, **kw: F.flip_pair(x, x, 0.5, **kw)[0],
    lambda x, **kw: _paint_boxes(x, **kw),
], ids=["local_pixel_shuffle", "bezier_map", "in_paint", "out_paint", "flip_pair", "paint_boxes"])
def test_functional_kernels_check_the_range_and_can_opt_out(fn):
    with pytest.raises(ValueError, match="found min -1000, max 1000"):
        fn(hu_cube())
    nan = cube()
    nan[0, 0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(nan)
    assert fn(hu_cube(), check_range=False).shape == hu_cube().shape


@pytest.mark.parametrize("cls", ARRAY)
def test_array_transforms_check_the_range_and_can_opt_out(cls):
    img = hu_cube(1)[0]
    with pytest.raises(ValueError, match=rf"{cls.__name__} input: values must lie in the expected range \[0, 1\], "
                                         r"found min -1000, max 1000"):
        cls(prob=1.0)(img)
    with pytest.raises(ValueError, match="expected range"):
        cls(prob=0.0)(img)  # bad data is reported whether or not the transform applies this time
    assert cls(prob=1.0, check_range=False)(img).shape == img.shape


@pytest.mark.parametrize("cls", DICT)
def test_dictionary_transforms_check_the_range_and_can_opt_out(cls):
    img = hu_cube(1)[0]
    with pytest.raises(ValueError, match="found min -1000, max 1000"):
        cls(keys="image")({"image": img})
    assert cls(keys="image", check_range=False)({"image": img})["image"].shape == img.shape


def test_genesis_degraded_names_the_key_and_can_opt_out():
    img = hu_cube(1)[0]
    with pytest.raises(ValueError, match=r"GenesisDegraded key 'image': values must lie in the expected range"):
        GenesisDegraded(keys="image")({"image": img})
    d = GenesisDegraded(keys="image", check_range=False, n_blocks=10)({"image": img})
    assert d["image"].shape == img.shape and d["target"].shape == img.shape


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------

def test_a_single_cube_is_not_read_as_a_2d_batch():
    with pytest.raises(ValueError) as err:
        GenesisDegrade()(torch.rand(1, 64, 64, 32))
    assert str(err.value) == ("GenesisDegrade expects (N, C, X, Y, Z) for spatial_dims=3, got (1, 64, 64, 32): "
                              "add the batch/channel dimension, or pass spatial_dims=2 for 2-D images")


def test_spatial_dims_2_takes_2d_batches_only():
    op = GenesisDegrade(spatial_dims=2, n_blocks=10)
    degraded, _ = op(torch.rand(3, 1, 32, 32))
    assert degraded.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match=r"expects \(N, C, X, Y\) for spatial_dims=2, got \(3, 1, 32, 32, 8\).*"
                                         r"spatial_dims=3 for 3-D images"):
        op(torch.rand(3, 1, 32, 32, 8))
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        GenesisDegrade(spatial_dims=4)


@pytest.mark.parametrize("cls", ARRAY)
def test_array_transforms_want_one_sample_of_their_rank(cls):
    with pytest.raises(ValueError) as err:
        cls(prob=1.0)(torch.rand(16, 16, 8))  # channel dimension missing
    assert str(err.value).startswith(f"{cls.__name__} expects one sample (C, X, Y, Z) for spatial_dims=3, "
                                     "got (16, 16, 8): add the channel dimension")
    with pytest.raises(ValueError, match=r"expects one sample \(C, X, Y, Z\)"):
        cls(prob=1.0)(torch.rand(1, 1, 16, 16, 8))  # a batch is not a sample
    out = cls(prob=1.0, spatial_dims=2)(torch.rand(1, 32, 32))
    assert out.shape == (1, 32, 32)


@pytest.mark.parametrize("cls", DICT)
def test_dictionary_transforms_pass_spatial_dims_on(cls):
    with pytest.raises(ValueError, match="expects one sample"):
        cls(keys="image")({"image": torch.rand(16, 16, 8)})
    assert cls(keys="image", spatial_dims=2)({"image": torch.rand(1, 32, 32)})["image"].shape == (1, 32, 32)


def test_genesis_degraded_shapes():
    with pytest.raises(ValueError, match=r"GenesisDegraded key 'image' expects one sample \(C, X, Y, Z\)"):
        GenesisDegraded(keys="image")({"image": torch.rand(16, 16, 8)})
    d = GenesisDegraded(keys="image", spatial_dims=2, flip_rule="spatial")({"image": np.random.rand(1, 32, 32)})
    assert d["image"].shape == (1, 32, 32) and isinstance(d["target"], np.ndarray)
