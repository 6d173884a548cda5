"""Provenance of the degradation operator: ``GenesisDegrade.describe()`` (every parameter, the
kernel that ran and why), the kernel choice, the once-per-process fallback warning, and the
per-batch plan that both kernels execute."""

import inspect
import json
import logging

import pytest
import torch

from genesis_monai.transforms import DESCRIBE_KEYS, GenesisDegrade, cpu_kernel, kernel_choice
from genesis_monai.transforms import functional as F

needs_c = pytest.mark.skipif(not cpu_kernel.available(), reason="compiled CPU kernel unavailable here")
CHOICE_LOGGER = "genesis_monai.transforms.kernel_choice"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def kernel_disabled(monkeypatch):
    """The compiled kernel switched off (as on a machine without a compiler), warning not yet given."""
    monkeypatch.setenv("GENESIS_MONAI_CPU_KERNEL", "0")
    cpu_kernel._reset_for_tests()
    kernel_choice._reset_warning_for_tests()
    yield
    monkeypatch.undo()
    cpu_kernel._reset_for_tests()
    kernel_choice._reset_warning_for_tests()


def _fallback_warnings(caplog):
    return [r for r in caplog.records if r.name == CHOICE_LOGGER and r.levelno == logging.WARNING]


def test_describe_lists_every_constructor_parameter_as_plain_json():
    def my_deform(x, g):
        return x

    op = GenesisDegrade(flip_rate=0.1, local_rate=0.2, nonlinear_rate=0.3, paint_rate=0.4, inpaint_rate=0.5,
                        mode="one_of", flip_rule="spatial", n_blocks=7, permutations="pool", pool_size=9,
                        min_inpaint_boxes=1, max_inpaint_boxes=2, min_outpaint_boxes=2, max_outpaint_boxes=3,
                        box_continue_prob=0.6, bezier_points=1000, bezier_lut_size=513, chunk=2, kernel="torch",
                        deform=my_deform, seed=11, spatial_dims=2, check_range=False)
    d = op.describe()
    assert tuple(d) == DESCRIBE_KEYS
    params = set(inspect.signature(GenesisDegrade.__init__).parameters) - {"self"}
    assert params <= set(d), params - set(d)  # a new constructor argument must show up here
    assert set(d) - params == {"kernel_used", "kernel_reason"}
    assert json.loads(json.dumps(d)) == d  # JSON-plain: no tensors, callables, tuples
    expected = dict(flip_rate=0.1, local_rate=0.2, nonlinear_rate=0.3, paint_rate=0.4, inpaint_rate=0.5,
                    mode="one_of", flip_rule="spatial", n_blocks=7, permutations="pool", pool_size=9,
                    min_inpaint_boxes=1, max_inpaint_boxes=2, min_outpaint_boxes=2, max_outpaint_boxes=3,
                    box_continue_prob=0.6, bezier_points=1000, bezier_lut_size=513, chunk=2, kernel="torch",
                    seed=11, spatial_dims=2, check_range=False, kernel_used=None, kernel_reason=None)
    assert {k: d[k] for k in expected} == expected
    assert "my_deform" in d["deform"]
    defaults = GenesisDegrade().describe()
    assert defaults["deform"] is None and defaults["seed"] is None and defaults["bezier_lut_size"] is None
    assert GenesisDegrade().set_random_state(5).describe()["seed"] == 5


@needs_c
def test_describe_names_the_compiled_kernel_after_a_call():
    op = GenesisDegrade(n_blocks=10)
    assert op.describe()["kernel_used"] is None
    op(torch.rand(2, 1, 16, 16, 8, generator=gen(1)))
    d = op.describe()
    assert d["kernel_used"] == "c" and op.kernel_used == "c"
    assert d["kernel_reason"].startswith("compiled CPU kernel built with ")
    assert "-O3" in d["kernel_reason"] and d["kernel_reason"].endswith(cpu_kernel.build_info())


def test_describe_says_why_torch_ran_without_the_compiled_kernel(kernel_disabled):
    op = GenesisDegrade(n_blocks=10)
    op(torch.rand(2, 1, 16, 16, 8, generator=gen(2)))
    d = op.describe()
    assert d["kernel_used"] == "torch" and d["kernel"] == "auto"
    assert d["kernel_reason"] == "C kernel unavailable: disabled by GENESIS_MONAI_CPU_KERNEL=0"


@pytest.mark.parametrize("kwargs, x, reason", [
    (dict(kernel="torch"), torch.rand(1, 1, 8, 8, 8), "kernel='torch' requested"),
    (dict(permutations="pool"), torch.rand(1, 1, 8, 8, 8), "permutations='pool' runs on the torch kernels only"),
    (dict(bezier_lut_size=1025), torch.rand(1, 1, 8, 8, 8), "bezier_lut_size=1025 runs on the torch kernels only"),
    (dict(), torch.rand(1, 1, 8, 8, 8).half(), "dtype torch.float16 (the compiled kernel takes float32/float64)"),
])
def test_torch_is_chosen_for_its_reasons(kwargs, x, reason):
    op = GenesisDegrade(n_blocks=10, **kwargs)
    op(x)
    assert (op.kernel_used, op.kernel_reason) == ("torch", reason)


def test_kernel_choice_for_a_tensor_on_another_device():
    x = torch.empty(2, 1, 8, 8, 8, device="meta")  # stands in for a GPU tensor: the device decides
    assert kernel_choice.choose_kernel(x, "auto") == kernel_choice.KernelChoice("torch", "tensor on meta")
    with pytest.raises(ValueError, match="float32/float64 CPU tensors, got torch.float32 on meta"):
        kernel_choice.choose_kernel(x, "c")
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernel_choice.choose_kernel(x, "cuda")


def test_fallback_warning_is_logged_once_per_process(kernel_disabled, caplog):
    caplog.set_level(logging.WARNING)
    x = torch.rand(2, 1, 16, 16, 8, generator=gen(3))
    op = GenesisDegrade(n_blocks=10)
    for _ in range(3):
        op(x)
    GenesisDegrade(n_blocks=10)(x)
    F.local_pixel_shuffle(x, 10)  # the functional kernels go through the same choice
    warnings = _fallback_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "GENESIS_MONAI_CPU_KERNEL=0" in message and "random stream" in message and "torch" in message
    assert "\n" not in message


def test_no_fallback_warning_when_torch_is_asked_for_or_the_tensor_is_not_for_c(kernel_disabled, caplog):
    caplog.set_level(logging.WARNING)
    x = torch.rand(2, 1, 16, 16, 8, generator=gen(4))
    GenesisDegrade(n_blocks=10, kernel="torch")(x)
    GenesisDegrade(n_blocks=10)(x.half())
    GenesisDegrade(n_blocks=10, permutations="pool")(x)
    assert _fallback_warnings(caplog) == []


@needs_c
def test_no_fallback_warning_when_the_compiled_kernel_runs(caplog):
    kernel_choice._reset_warning_for_tests()
    caplog.set_level(logging.WARNING)
    GenesisDegrade(n_blocks=10)(torch.rand(2, 1, 16, 16, 8))
    assert _fallback_warnings(caplog) == []


# ----------------------------------------------------------------------------------------------
# the plan: drawn once per batch, the same for both kernels
# ----------------------------------------------------------------------------------------------

@needs_c
def test_both_kernels_execute_the_same_plan():
    # flip and Bezier draw nothing at the voxel level: with only those, the kernels agree
    x = torch.rand(16, 1, 16, 16, 8, generator=gen(5))
    kwargs = dict(flip_rate=0.7, local_rate=0.0, nonlinear_rate=1.0, paint_rate=0.0)
    c_out = GenesisDegrade(kernel="c", **kwargs)(x, generator=gen(6))
    t_out = GenesisDegrade(kernel="torch", **kwargs)(x, generator=gen(6))
    assert torch.equal(c_out[1], t_out[1]) and not torch.equal(c_out[1], x)
    assert (c_out[0] - t_out[0]).abs().max() < 1e-6
    # the whole recipe: same plan (flips, so same targets), different voxel-level randomness
    c_full = GenesisDegrade(kernel="c")(x, generator=gen(7))
    t_full = GenesisDegrade(kernel="torch")(x, generator=gen(7))
    assert torch.equal(c_full[1], t_full[1])
    assert not torch.equal(c_full[0], t_full[0])


@pytest.mark.parametrize("kernel", ["torch", "c"])
def test_plan_decides_what_each_sample_gets(kernel):
    if kernel == "c" and not cpu_kernel.available():
        pytest.skip("compiled CPU kernel unavailable here")
    x = torch.rand(64, 1, 32, 32, 16, generator=gen(8))  # blocks up to 3x3x1: a shuffle moves voxels
    op = GenesisDegrade(kernel=kernel, n_blocks=50)
    plan = op.draw_plan(x, gen(9))
    degraded, target = op(x, generator=gen(9))  # the same generator state: the same plan
    untouched = ~(plan.local | plan.nonlinear | plan.inpaint | plan.outpaint)
    changed = (degraded != target).flatten(1).any(1)
    assert torch.equal(changed, ~untouched)
    assert not (plan.inpaint & plan.outpaint).any()
    assert plan.seeds.shape == (64,) and plan.box_corner.shape == (64, 5, 3)


@pytest.mark.parametrize("kernel", ["torch", "c"])
def test_deform_sees_the_flipped_input_and_runs_before_the_degradations(kernel):
    if kernel == "c" and not cpu_kernel.available():
        pytest.skip("compiled CPU kernel unavailable here")
    x = torch.rand(6, 1, 16, 16, 8, generator=gen(10))
    seen = {}

    def deform(v, g):
        seen["input"], seen["generator"] = v.clone(), g
        return torch.full_like(v, 0.25)

    g = gen(11)
    op = GenesisDegrade(flip_rate=0.9, local_rate=0.0, nonlinear_rate=1.0, paint_rate=0.0, deform=deform, kernel=kernel)
    degraded, target = op(x, generator=g)
    assert torch.equal(seen["input"], target) and not torch.equal(target, x)
    assert seen["generator"] is g  # the call's generator, after the plan was drawn from it
    assert (degraded != 0.25).all()  # the Bezier map ran on the deformed input ...
    assert torch.unique(degraded[0]).numel() == 1  # ... a constant one
