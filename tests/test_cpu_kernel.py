"""The compiled CPU kernel of the degradations: build and cache, fallback to torch, agreement
with the torch kernels, independence from the thread count, argument checks, recycled buffers,
the compiled range check.
(The sampling laws of both kernels are checked against the oracle in test_transforms.py.)"""

import gc
import glob
import os

import numpy as np
import pytest
import torch

import reference_degradations as ref
from genesis_monai.transforms import GenesisDegrade, buffer_pool, cpu_kernel
from genesis_monai.transforms import functional as F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def fresh_kernel_state(monkeypatch):
    """Forget the loaded library before and after the test, so that environment changes apply."""
    cpu_kernel._reset_for_tests()
    yield monkeypatch
    monkeypatch.undo()
    cpu_kernel._reset_for_tests()


def test_kernel_builds_into_an_empty_cache(fresh_kernel_state, tmp_path):
    fresh_kernel_state.setenv("GENESIS_MONAI_CACHE", str(tmp_path))
    assert cpu_kernel.available(), cpu_kernel.unavailable_reason()
    built = glob.glob(str(tmp_path / "kernels" / "degrade-*"))
    assert len(built) == 1 and os.path.getsize(built[0]) > 0
    assert not glob.glob(str(tmp_path / "kernels" / "*.tmp"))  # written atomically
    # a second process-start finds the cached library instead of compiling again
    mtime = os.path.getmtime(built[0])
    cpu_kernel._reset_for_tests()
    assert cpu_kernel.available()
    assert os.path.getmtime(built[0]) == mtime


def test_disabled_kernel_falls_back_to_torch(fresh_kernel_state):
    fresh_kernel_state.setenv("GENESIS_MONAI_CPU_KERNEL", "0")
    assert not cpu_kernel.available()
    assert "GENESIS_MONAI_CPU_KERNEL=0" in cpu_kernel.unavailable_reason()
    x = torch.rand(3, 1, 16, 16, 8, generator=gen(1))
    auto = GenesisDegrade(n_blocks=50)(x, generator=gen(2))
    torch_path = GenesisDegrade(n_blocks=50, kernel="torch")(x, generator=gen(2))
    assert torch.equal(auto[0], torch_path[0]) and torch.equal(auto[1], torch_path[1])
    with pytest.raises(cpu_kernel.KernelUnavailableError, match="GENESIS_MONAI_CPU_KERNEL=0"):
        GenesisDegrade(kernel="c")(x)
    with pytest.raises(cpu_kernel.KernelUnavailableError):
        F.local_pixel_shuffle(x, 10, kernel="c")


def test_broken_compiler_is_reported(fresh_kernel_state, tmp_path):
    fresh_kernel_state.setenv("GENESIS_MONAI_CACHE", str(tmp_path))
    fresh_kernel_state.setattr(cpu_kernel, "_compilers", lambda: [["false"]])
    assert not cpu_kernel.available()
    assert "could not build the C kernel" in cpu_kernel.unavailable_reason()
    assert "false" in cpu_kernel.unavailable_reason()
    # the operator still works, on the torch kernels
    out, _ = GenesisDegrade(n_blocks=10)(torch.rand(2, 1, 16, 16, 8))
    assert out.shape == (2, 1, 16, 16, 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bezier_c_equals_torch(dtype):
    # the C kernel tabulates and sorts each curve itself (merging its monotone runs): many random
    # curves, both branches (monotone / inverting), must give the torch kernel's map
    n = 96
    points, invert = F.sample_bezier_params(n, gen(3))
    invert[: n // 2] = True
    invert[n // 2:] = False
    x = torch.rand(n, 2, 8, 8, 8, generator=gen(4), dtype=dtype)
    c = F.bezier_map(x, points, invert, kernel="c")
    t = F.bezier_map(x, points, invert, kernel="torch")
    assert c.dtype == dtype
    assert (c - t).abs().max() < 1e-6
    for i in (0, n - 1):  # and the 100,000-point oracle
        expected = ref.bezier_map(x[i].double().numpy(), points[i].tolist(), bool(invert[i]))
        assert np.abs(c[i].double().numpy() - expected).max() < 1e-5


def test_bezier_c_clamps_like_np_interp_and_keeps_nan():
    points, invert = F.sample_bezier_params(2, gen(5))
    x = torch.tensor([-0.5, 0.0, 0.25, 1.0, 1.5, float("nan")], dtype=torch.float64).view(1, 1, 6, 1).repeat(2, 1, 1, 1)
    with pytest.raises(ValueError, match="NaN"):
        F.bezier_map(x, points, invert, kernel="c")
    out = F.bezier_map(x, points, invert, kernel="c", check_range=False)  # the opt-out reaches the kernel
    for i in range(2):
        expected = ref.bezier_map(np.nan_to_num(x[i].numpy(), nan=0.5), points[i].tolist(), bool(invert[i]), 4096)
        assert np.allclose(out[i].numpy().ravel()[:5], expected.ravel()[:5], atol=1e-7)
    assert torch.isnan(out[:, 0, 5]).all()


def test_output_does_not_depend_on_thread_count():
    x = torch.rand(7, 1, 32, 32, 16, generator=gen(6))
    n = x.shape[0]
    flags = torch.full((n,), cpu_kernel.SHUFFLE | cpu_kernel.OUTPAINT | cpu_kernel.FLIP_X, dtype=torch.uint8)
    seeds = F.sample_seeds(n, gen(7))
    count = F.sample_box_counts(n, 1, 5, 0.95, gen(8))
    corner, size = F.sample_outpaint_boxes((32, 32, 16), n, 5, gen(9))
    runs = [cpu_kernel.degrade(x, flags, seeds, target=True, n_blocks=500, box_count=count, box_corner=corner,
                               box_size=size, threads=t) for t in (1, 2, 3)]
    for out, target in runs[1:]:
        assert torch.equal(out, runs[0][0]) and torch.equal(target, runs[0][1])
    assert torch.equal(runs[0][1], x.flip(2))


def test_c_kernel_same_seed_same_output_and_float64():
    x = torch.rand(4, 1, 32, 32, 16, generator=gen(10), dtype=torch.float64)
    a = GenesisDegrade(kernel="c", seed=3)(x)
    b = GenesisDegrade(kernel="c", seed=3)(x)
    assert a[0].dtype == torch.float64
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], GenesisDegrade(kernel="c", seed=4)(x)[0])


def test_kernel_choice_is_validated():
    x = torch.rand(2, 1, 16, 16, 8)
    with pytest.raises(ValueError, match="kernel must be one of"):
        GenesisDegrade(kernel="fortran")
    with pytest.raises(ValueError, match="permutations='exact'"):
        GenesisDegrade(kernel="c", permutations="pool")
    with pytest.raises(ValueError, match="float32/float64 CPU"):
        F.local_pixel_shuffle(x.half(), 10, kernel="c")
    with pytest.raises(ValueError, match="permutations='exact'"):
        F.local_pixel_shuffle(x, 10, permutations="pool", kernel="c")
    with pytest.raises(ValueError, match="lut_size=None"):
        F.bezier_map(x, *F.sample_bezier_params(2), lut_size=1025, kernel="c")
    # other dtypes simply take the torch path under "auto"
    out = F.local_pixel_shuffle(x.half(), 10)
    assert out.dtype == torch.float16


def test_low_level_arguments_are_checked():
    x = torch.rand(2, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="flags and seeds"):
        cpu_kernel.degrade(x, torch.zeros(3, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="no Bezier points"):
        cpu_kernel.degrade(x, torch.full((2,), cpu_kernel.BEZIER, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="no boxes"):
        cpu_kernel.degrade(x, torch.full((2,), cpu_kernel.INPAINT, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    bad_corner = torch.tensor([[[0, 0, 6]], [[0, 0, 0]]])
    with pytest.raises(ValueError, match="outside the sample"):
        cpu_kernel.degrade(x, torch.full((2,), cpu_kernel.OUTPAINT, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64),
                           box_count=torch.ones(2, dtype=torch.int64), box_corner=bad_corner,
                           box_size=torch.full((2, 1, 3), 3))
    with pytest.raises(TypeError, match="float32/float64 CPU"):
        cpu_kernel.degrade(x.long(), torch.zeros(2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))


def test_deform_sits_between_flip_and_degradations():
    x = torch.rand(6, 1, 16, 16, 8, generator=gen(11))
    seen = {}

    def deform(v, g):
        seen["input"] = v.clone()
        return torch.full_like(v, 0.25)

    op = GenesisDegrade(flip_rate=0.9, local_rate=0.0, nonlinear_rate=0.0, paint_rate=0.0, deform=deform, kernel="c")
    degraded, target = op(x, generator=gen(12))
    assert torch.equal(seen["input"], target)  # the deformation sees the flipped input
    assert torch.equal(degraded, torch.full_like(x, 0.25))
    assert not torch.equal(target, x)


def test_buffer_pool_never_hands_out_memory_in_use():
    pool = buffer_pool.BufferPool(max_bytes=1 << 20, per_size=2)
    a = pool.empty((4, 5), torch.float32)
    ptr = a.data_ptr()
    view = a[1:]
    del a
    gc.collect()
    b = pool.empty((4, 5), torch.float32)
    assert b.data_ptr() != ptr  # a view still reaches a's memory
    del view
    gc.collect()
    c = pool.empty((4, 5), torch.float32)
    assert c.data_ptr() == ptr  # released, then reused
    c.fill_(1.5)
    assert torch.equal(c, torch.full((4, 5), 1.5))
    # size caps: nothing bigger than max_bytes is kept
    big = pool.empty((1 << 19,), torch.float32)  # 2 MiB
    del big
    gc.collect()
    assert pool.held_bytes <= 1 << 20


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_range_check_finds_any_value_outside_unit_interval(dtype, monkeypatch):
    # the compiled yes/no pass behind validation.check_range: 16 lanes plus a scalar tail, so
    # bad values are planted in the lanes, in the tail, at the ends, and in each thread's part
    monkeypatch.setattr(cpu_kernel, "_RANGE_SPLIT", 1000)  # split small tensors over threads too
    n = 16 * 1000 + 7
    x = torch.rand(n, dtype=dtype)
    x[0], x[-1] = 0.0, 1.0  # the edges are inside
    for threads in (1, 3):
        assert not cpu_kernel.outside_unit_range(x, threads=threads)
        for pos in (0, 5, 15, 16 * 500 + 3, n - 7, n - 1):
            for bad in (float("nan"), -1e-7, 1.0 + 1e-6, float("inf"), -float("inf")):
                y = x.clone()
                y[pos] = bad
                assert cpu_kernel.outside_unit_range(y, threads=threads), (pos, bad, threads)
    assert not cpu_kernel.outside_unit_range(torch.empty(0, dtype=dtype))
    with pytest.raises(TypeError, match="contiguous"):
        cpu_kernel.outside_unit_range(torch.rand(4, 4).t())


def test_build_info_names_the_compiler_command():
    info = cpu_kernel.build_info()
    assert info is not None and "-O3" in info and "-shared" in info
