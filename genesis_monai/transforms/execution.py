"""Execute a :class:`.plan.DegradePlan` on a batch: with the compiled CPU kernel or with torch.

Both executors take the batch ``x`` (N, C, X, Y[, Z]) float in [0, 1] (already checked) and its
plan, and return ``(degraded, target)``: the target is ``x`` flipped as planned, the degraded
output the same flip, then ``deform`` (if any), then the planned degradations in the published
order (local shuffle, Bezier map, painting). Neither writes to ``x``.

What each kernel draws itself, from the plan's seeds: the shuffle blocks and permutations and the
painting noise. The C kernel uses one stream per sample (``plan.seeds``), the torch kernels one
stream per batch (``plan.torch_seed``) consumed in a fixed order.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from . import cpu_kernel
from .bezier import bezier_torch
from .flip import apply_flip
from .painting import box_union_mask, paint_torch
from .plan import DegradePlan
from .shuffle import shuffle_torch

__all__ = ["Deform", "run_c", "run_torch"]

#: ``deform(x, generator) -> x``: applied to the degraded branch only, after the flip
Deform = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]


def run_c(x: torch.Tensor, plan: DegradePlan, *, n_blocks: int, bezier_points: int,
          deform: Optional[Deform] = None, generator: Optional[torch.Generator] = None
          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The whole plan in one pass per sample (float32/float64 CPU ``x``)."""
    curves = dict(points=plan.points, invert=plan.invert, n_points=bezier_points)
    boxes = dict(box_count=plan.box_count.cpu(), box_corner=plan.box_corner.cpu(), box_size=plan.box_size.cpu())
    flips, degradations = plan.flip_flags(), plan.degradation_flags()
    if deform is None:
        return cpu_kernel.degrade(x, flips | degradations, plan.seeds, target=True, n_blocks=n_blocks,
                                  **curves, **boxes)
    # the deformation sits between the flip (shared with the target) and the degradations
    degraded, target = cpu_kernel.degrade(x, flips, plan.seeds, target=True)
    degraded = deform(degraded, generator).contiguous()
    degraded = cpu_kernel.degrade(degraded, degradations, plan.seeds, n_blocks=n_blocks, **curves, **boxes)
    return degraded, target


def run_torch(x: torch.Tensor, plan: DegradePlan, *, n_blocks: int, bezier_points: int,
              permutations: str = "exact", pool_size: int = 64, bezier_lut_size: Optional[int] = None,
              chunk: Optional[int] = None, deform: Optional[Deform] = None,
              generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The plan with the torch kernels (any device); each degradation runs once, batched over the
    samples that have it (``index_select`` / ``index_copy_``, no per-sample loop)."""
    degraded = apply_flip([x], plan.flip, plan.flip_dims)[0]
    target = degraded.clone()
    if deform is not None:
        degraded = deform(degraded, generator)
    stream = torch.Generator(device=x.device)
    stream.manual_seed(plan.torch_seed)

    def apply(mask: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        idx = mask.nonzero().flatten()
        if idx.numel():
            degraded.index_copy_(0, idx, fn(idx, degraded.index_select(0, idx)))

    apply(plan.local, lambda idx, v: shuffle_torch(v, n_blocks, stream, permutations, pool_size, chunk))
    apply(plan.nonlinear, lambda idx, v: bezier_torch(v, plan.points[idx], plan.invert[idx], bezier_points,
                                                      bezier_lut_size, chunk))

    def paint(fill: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def fn(idx: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            mask = box_union_mask(tuple(v.shape[2:]), plan.box_corner[idx], plan.box_size[idx], plan.box_count[idx])
            return paint_torch(v, mask, fill, stream)
        return fn

    apply(plan.inpaint, paint("inside"))
    apply(plan.outpaint, paint("outside"))
    return degraded, target
