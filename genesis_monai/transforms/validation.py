"""Input checks shared by every degradation entry point: type, dtype, shape and value range.

The degradations are defined on intensities in [0, 1] (METHODS.md §1: the published cubes are CT
clipped to -1000..1000 HU and scaled linearly to [0, 1]); the Bezier map clamps anything outside,
and painting fills with U[0, 1) noise, so unscaled input trains on nonsense without any error.
The range check is one pass over the batch, never a pass per sample: on float32/float64
contiguous CPU tensors the compiled kernel's vectorised yes/no test (:func:`.cpu_kernel.outside_unit_range`,
~0.4 ms for 32 64x64x32 float32 cubes on one core), elsewhere one ``torch.aminmax`` (which
propagates NaN, so the same call finds NaN too). Why not ``aminmax`` on the CPU as well: measured
here, its OpenMP threads keep spinning after it returns and slowed the compiled degradation
that follows by ~4 ms per such batch (~20%), far more than the pass itself. Only a failing check
does more work, to say what it found.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import cpu_kernel

__all__ = ["RANGE_HINT", "check_batch", "check_sample", "check_range", "check_spatial_dims"]

#: what to do about out-of-range input, appended to the range error
RANGE_HINT = ("scale the images to [0, 1] first, e.g. CT: clip to the window -1000..1000 HU and map it linearly "
              "to [0, 1] (monai.transforms.ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=0, b_max=1, "
              "clip=True)); or pass check_range=False to skip this check")


def _dims_text(spatial_dims: int) -> str:
    return ", ".join("XYZ"[:spatial_dims]) if spatial_dims <= 3 else ", ".join(f"D{i}" for i in range(spatial_dims))


def check_spatial_dims(spatial_dims: int, name: str) -> int:
    """``spatial_dims`` as an int, 2 or 3 (the degradations are defined for 2-D and 3-D images)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def _check_tensor(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor with values in [0, 1], got {x.dtype}")


def check_batch(x: torch.Tensor, name: str = "x", spatial_dims: Optional[int] = None) -> None:
    """A batch (N, C, X, Y, Z) (``spatial_dims=3``) or (N, C, X, Y) (``spatial_dims=2``) of floats.

    ``spatial_dims=None`` (the functional kernels) accepts both. With an explicit value, a batch
    of the wrong rank gets a message saying which dimension is missing; this is what stops a
    single (1, X, Y, Z) cube from being read as a 2-D batch with X channels.
    """
    _check_tensor(x, name)
    if spatial_dims is None:
        if x.ndim not in (4, 5):
            raise ValueError(f"{name}: expected a batch (N, C, X, Y[, Z]) with 2 or 3 spatial dims, "
                             f"got {tuple(x.shape)}")
        return
    if x.ndim != spatial_dims + 2:
        other = 2 if spatial_dims == 3 else 3
        raise ValueError(f"{name} expects (N, C, {_dims_text(spatial_dims)}) for spatial_dims={spatial_dims}, "
                         f"got {tuple(x.shape)}: add the batch/channel dimension, or pass spatial_dims={other} "
                         f"for {other}-D images")


def check_sample(x: torch.Tensor, name: str, spatial_dims: int) -> None:
    """One sample (C, X, Y, Z) (``spatial_dims=3``) or (C, X, Y) (``spatial_dims=2``) of floats."""
    _check_tensor(x, name)
    if x.ndim != spatial_dims + 1:
        other = 2 if spatial_dims == 3 else 3
        raise ValueError(f"{name} expects one sample (C, {_dims_text(spatial_dims)}) for spatial_dims={spatial_dims}, "
                         f"got {tuple(x.shape)}: add the channel dimension (e.g. monai.transforms.EnsureChannelFirst), "
                         f"or pass spatial_dims={other} for {other}-D images")


def check_range(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError unless every value of ``x`` lies in [0, 1] (NaN fails too).

    One pass (module docstring); a GPU tensor costs one host sync.
    """
    if x.numel() == 0:
        return
    x = x.detach()
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.is_contiguous()
            and cpu_kernel.available() and not cpu_kernel.outside_unit_range(x)):
        return
    lo, hi = torch.aminmax(x)
    lo_v, hi_v = torch.stack([lo, hi]).tolist()
    # NaN compares False both ways: "not in range" catches it without a separate isnan pass
    if 0.0 <= lo_v and hi_v <= 1.0:
        return
    if lo_v != lo_v or hi_v != hi_v:
        # error path only: the extra passes to describe the NaNs cost nothing in training
        nan = torch.isnan(x)
        rest = x[~nan]
        span = ""
        if rest.numel():
            r_lo, r_hi = torch.aminmax(rest)
            span = f", the other values min {float(r_lo):.6g}, max {float(r_hi):.6g}"
        found = f"found {int(nan.sum())} NaN value(s) (min nan, max nan{span})"
    else:
        found = f"found min {lo_v:.6g}, max {hi_v:.6g}"
    raise ValueError(f"{name}: values must lie in the expected range [0, 1], {found}; {RANGE_HINT}")
