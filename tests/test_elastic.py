"""RandElasticInPlane against a SciPy oracle of the reference's elastic deformation, and its statistics; the
compiled CPU kernel (exact vs the oracle, its noise, determinism, thread independence, build cache, fallback)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch

from genesis_monai.transforms import RandElasticInPlane, cpu_kernel, elastic_kernel
from genesis_monai.transforms import elastic as elastic_module
from genesis_monai.transforms.elastic import gaussian_matrix
from genesis_monai.transforms.sampling import sample_seeds
from reference_elastic import reference_elastic


def test_gaussian_matrix_is_scipy_gaussian_filter_constant_mode():
    from scipy.ndimage import gaussian_filter1d

    v = np.random.default_rng(0).uniform(-1, 1, 40)
    g = gaussian_matrix(40, 8.0, dtype=torch.float64).numpy()
    np.testing.assert_allclose(g @ v, gaussian_filter1d(v, 8.0, mode="constant", cval=0.0), atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 64, 32), (24, 40, 8)])
def test_same_noise_gives_the_reference_cube(shape):
    rng = np.random.default_rng(1)
    image = rng.random(shape)
    n0, n1 = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    expected = reference_elastic(image, n0, n1)
    t = RandElasticInPlane()
    disp = t.displacements(torch.tensor(np.stack([n0, n1])[None]))
    got = t.warp(torch.tensor(image)[None, None], disp)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)
    # float32, as training runs it
    got32 = t.warp(torch.tensor(image, dtype=torch.float32)[None, None], disp.float())[0, 0].numpy()
    np.testing.assert_allclose(got32, expected, atol=2e-4)


def test_displacement_statistics_match_the_reference():
    """Fact sheet §6.4: displacement std ~3.5 voxels, max ~10 on 64x64x32 cubes (sigma 8, alpha 991)."""
    t = RandElasticInPlane(seed=0)
    noise = torch.rand((8, 2, 64, 64, 32), generator=torch.Generator().manual_seed(0)) * 2 - 1
    disp = t.displacements(noise)
    assert 2.5 < float(disp.std()) < 4.5
    assert 6.0 < float(disp.abs().amax(dim=(1, 2, 3, 4)).mean()) < 14.0


def test_depth_is_never_displaced_and_values_stay_in_range():
    x = torch.zeros(2, 1, 32, 32, 8)
    x[..., 3] = 1.0  # one bright depth slice: an in-plane warp keeps it exactly where it is
    out = RandElasticInPlane(seed=0)(x)
    torch.testing.assert_close(out, x)
    y = torch.rand(2, 1, 32, 32, 8)
    z = RandElasticInPlane(seed=0)(y)
    assert z.shape == y.shape and z.dtype == y.dtype and 0.0 <= float(z.min()) and float(z.max()) <= 1.0
    assert not torch.allclose(z, y)


def test_seeded_reproducible_and_prob():
    x = torch.rand(4, 1, 16, 16, 8)
    a, b = RandElasticInPlane(seed=3)(x), RandElasticInPlane(seed=3)(x)
    torch.testing.assert_close(a, b)
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(RandElasticInPlane(prob=0.0)(x, generator=g), x)
    assert RandElasticInPlane().describe()["alpha"] == 991.0


def test_bad_input_is_refused():
    t = RandElasticInPlane()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        t(torch.full((1, 1, 8, 8, 8), 500.0))
    with pytest.raises(ValueError):
        t(torch.rand(1, 8, 8, 8))
    with pytest.raises(ValueError, match="sigma"):
        RandElasticInPlane(sigma=0)


# ----------------------------------------------------------------------------------------------
# the compiled CPU kernel (csrc/elastic.c via genesis_monai.transforms.elastic_kernel)
# ----------------------------------------------------------------------------------------------

needs_kernel = pytest.mark.skipif(not elastic_kernel.available(),
                                  reason=f"elastic C kernel unavailable: {elastic_kernel.unavailable_reason()}")


@pytest.fixture
def fresh_elastic_kernel(monkeypatch):
    """Forget the loaded library (and the fallback warning) before and after the test."""
    elastic_kernel._reset_for_tests()
    elastic_module._reset_warning_for_tests()
    yield monkeypatch
    monkeypatch.undo()
    elastic_kernel._reset_for_tests()
    elastic_module._reset_warning_for_tests()


@needs_kernel
@pytest.mark.parametrize("shape, sigma", [
    ((64, 64, 32), 8.0),   # the training cube: symmetric half-cost passes along X and Y
    ((24, 40, 8), 8.0), ((5, 7, 3), 8.0), ((33, 17, 65), 8.0),  # odd sizes, partial vector blocks
    ((64, 48, 40), 2.0),   # small radius against long axes: the banded passes
    ((1, 9, 4), 8.0), ((7, 1, 5), 8.0), ((6, 5, 1), 8.0),  # axes of one voxel
])
def test_c_kernel_same_noise_gives_the_reference_cube(shape, sigma):
    rng = np.random.default_rng(2)
    image = rng.random((2,) + shape)  # two channels share the fields
    n0, n1 = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    noise = torch.tensor(np.stack([n0, n1])[None])
    got, disp = elastic_kernel.elastic(torch.tensor(image)[None], noise=noise, sigma=sigma, return_displacement=True)
    for c in range(2):
        np.testing.assert_allclose(got[0, c].numpy(), reference_elastic(image[c], n0, n1, sigma=sigma), atol=1e-10)
    torch.testing.assert_close(disp, RandElasticInPlane(sigma=sigma).displacements(noise), atol=1e-10, rtol=0)
    got32 = elastic_kernel.elastic(torch.tensor(image, dtype=torch.float32)[None], noise=noise.float(), sigma=sigma)
    np.testing.assert_allclose(got32[0, 0].numpy(), reference_elastic(image[0], n0, n1, sigma=sigma), atol=2e-4)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_kernel_seeded_call_is_the_oracle_on_its_own_noise(dtype):
    """The whole seeded path: seeds from the generator -> per-sample noise -> smoothing -> warp."""
    x = torch.rand(3, 1, 20, 24, 12, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = RandElasticInPlane(seed=11, kernel="c")(x)
    seeds = sample_seeds(3, torch.Generator().manual_seed(11))
    noise = elastic_kernel.noise(seeds, (20, 24, 12), dtype).double()  # float32 draws its own (24-bit) noise
    for i in range(3):
        expected = reference_elastic(x[i, 0].double().numpy(), noise[i, 0].numpy(), noise[i, 1].numpy())
        np.testing.assert_allclose(out[i, 0].double().numpy(), expected, atol=1e-10 if dtype == torch.float64 else 2e-4)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_kernel_noise_is_uniform_minus_one_one(dtype):
    noise = elastic_kernel.noise(torch.tensor([1, 2, -5]), (16, 15, 9), dtype)  # odd plane size
    assert noise.shape == (3, 2, 16, 15, 9) and noise.dtype == dtype
    assert float(noise.min()) >= -1.0 and float(noise.max()) < 1.0
    assert abs(float(noise.mean())) < 0.02 and abs(float(noise.var()) - 1 / 3) < 0.02
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[0, 0], noise[0, 1])
    torch.testing.assert_close(elastic_kernel.noise(torch.tensor([2]), (16, 15, 9), dtype)[0], noise[1])


@needs_kernel
def test_c_kernel_is_deterministic_and_independent_of_threads_and_batch():
    x = torch.rand(7, 1, 32, 32, 16, generator=torch.Generator().manual_seed(3))
    seeds = torch.arange(7) * 1_000_003 - 5
    one = elastic_kernel.elastic(x, seeds, threads=1)
    for threads in (2, 3, 8):
        assert torch.equal(elastic_kernel.elastic(x, seeds, threads=threads), one)
    assert torch.equal(elastic_kernel.elastic(x[2:5], seeds[2:5]), one[2:5])  # a sample depends only on its seed
    a = RandElasticInPlane(seed=4, threads=1)(x)
    assert torch.equal(RandElasticInPlane(seed=4, threads=2)(x), a)
    assert not torch.equal(RandElasticInPlane(seed=5)(x), a)
    t = RandElasticInPlane(seed=4)
    first, second = t(x), t(x)  # the stream continues
    assert torch.equal(first, a) and not torch.equal(second, a)


@needs_kernel
def test_c_kernel_prob_dtypes_and_describe():
    x = torch.rand(16, 1, 16, 16, 8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(RandElasticInPlane(prob=0.0, kernel="c", seed=0)(x), x)
    t = RandElasticInPlane(prob=0.5, kernel="c", seed=1)
    out = t(x)
    kept = (out == x).flatten(1).all(1)
    assert 0 < int(kept.sum()) < 16
    assert t.describe()["kernel_used"] == "c" and t.describe()["kernel"] == "c"
    for dtype in (torch.float16, torch.bfloat16):
        y = RandElasticInPlane(seed=0)(x.to(dtype))
        assert y.dtype == dtype and y.shape == x.shape
    with pytest.raises(ValueError, match="kernel"):
        RandElasticInPlane(kernel="cuda")


def test_kernel_torch_keeps_the_torch_stream():
    """kernel="torch" is the previous implementation: noise from one torch.rand of the batch."""
    x = torch.rand(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(7))
    t = RandElasticInPlane(kernel="torch")
    g = torch.Generator().manual_seed(9)
    out = t(x, generator=g)
    g = torch.Generator().manual_seed(9)
    noise = torch.rand((2, 2, 16, 16, 8), generator=g) * 2 - 1
    torch.testing.assert_close(out, t.warp(x, t.displacements(noise)))
    assert t.describe()["kernel_used"] == "torch"


@needs_kernel
def test_c_kernel_builds_into_an_empty_cache(fresh_elastic_kernel, tmp_path):
    fresh_elastic_kernel.setenv("GENESIS_MONAI_CACHE", str(tmp_path))
    assert elastic_kernel.available(), elastic_kernel.unavailable_reason()
    built = glob.glob(str(tmp_path / "kernels" / "elastic-*"))
    assert len(built) == 1 and os.path.getsize(built[0]) > 0
    assert not glob.glob(str(tmp_path / "kernels" / "*.tmp"))
    assert "-O3" in elastic_kernel.build_info()
    mtime = os.path.getmtime(built[0])
    elastic_kernel._reset_for_tests()
    assert elastic_kernel.available() and os.path.getmtime(built[0]) == mtime  # cached


def test_disabled_kernel_falls_back_to_torch(fresh_elastic_kernel, caplog):
    fresh_elastic_kernel.setenv("GENESIS_MONAI_CPU_KERNEL", "0")
    assert not elastic_kernel.available()
    assert "GENESIS_MONAI_CPU_KERNEL=0" in elastic_kernel.unavailable_reason()
    x = torch.rand(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    auto = RandElasticInPlane(seed=3)
    with caplog.at_level("WARNING", logger="genesis_monai.transforms.elastic"):
        out = auto(x)
    assert auto.describe()["kernel_used"] == "torch"
    assert any("elastic kernel unavailable" in r.getMessage() for r in caplog.records)
    assert torch.equal(out, RandElasticInPlane(seed=3, kernel="torch")(x))
    with pytest.raises(elastic_kernel.KernelUnavailableError, match="GENESIS_MONAI_CPU_KERNEL=0"):
        RandElasticInPlane(kernel="c")(x)


def test_broken_compiler_is_reported(fresh_elastic_kernel, tmp_path):
    fresh_elastic_kernel.setenv("GENESIS_MONAI_CACHE", str(tmp_path))
    fresh_elastic_kernel.setattr(cpu_kernel, "_compilers", lambda: [["false"]])
    assert not elastic_kernel.available()
    assert "could not build the C elastic kernel" in elastic_kernel.unavailable_reason()
    out = RandElasticInPlane(seed=0)(torch.rand(2, 1, 16, 16, 8))  # still works, on torch
    assert out.shape == (2, 1, 16, 16, 8)


@needs_kernel
def test_c_kernel_argument_checks():
    x = torch.rand(2, 1, 8, 8, 4)
    with pytest.raises(ValueError, match="seeds"):
        elastic_kernel.elastic(x, torch.arange(3))
    with pytest.raises(ValueError, match="noise"):
        elastic_kernel.elastic(x, noise=torch.zeros(2, 2, 8, 8, 5))
    with pytest.raises(TypeError):
        elastic_kernel.elastic(x.half(), torch.arange(2))
    with pytest.raises(ValueError):
        elastic_kernel.elastic(x[0], torch.arange(1))
