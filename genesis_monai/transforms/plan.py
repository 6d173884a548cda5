"""The per-batch plan of :class:`.batch.GenesisDegrade`: every per-sample random decision, drawn once.

A plan holds, for a batch of N samples: which flip axes end up flipped, which degradations each
sample gets, its Bezier curve, its painting boxes, and the seeds of the voxel-level randomness
(shuffle blocks, permutations, noise) that the kernels draw themselves. :func:`draw_plan` draws it
with the shared samplers of :mod:`.sampling` in one fixed order, whatever kernel will run it, so
the compiled and the torch kernels execute the SAME plan for the same generator state (on one
device); :mod:`.execution` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

from . import cpu_kernel
from .flip import flip_dims
from .sampling import (flip_parity, sample_bezier_params, sample_box_counts, sample_inpaint_boxes,
                       sample_outpaint_boxes, sample_seeds)

__all__ = ["MODES", "DegradePlan", "draw_plan"]

#: "sequential": Models Genesis (each step with its own probability); "one_of": Semantic Genesis /
#: TransVW (exactly one of local shuffle, non-linear, in-paint, out-paint, uniformly)
MODES = ("sequential", "one_of")

# flip bit of the compiled kernel per batch dimension (N, C, X, Y, Z)
_FLIP_BIT = {1: cpu_kernel.FLIP_C, 2: cpu_kernel.FLIP_X, 3: cpu_kernel.FLIP_Y, 4: cpu_kernel.FLIP_Z}


@dataclass
class DegradePlan:
    """Per-sample decisions of one batch (all tensors on the batch's device unless noted).

    Attributes:
        flip_dims: the candidate flip dimensions of the batch (e.g. [1, 2, 3] for the reference rule).
        flip: (N, len(flip_dims)) bool, whether each candidate axis ends up flipped.
        local, nonlinear, inpaint, outpaint: (N,) bool, the degradations of each sample
            (inpaint and outpaint never both).
        points, invert: (N, 4) float64 Bezier control points and (N,) bool inversion flags
            (drawn for every sample; used where ``nonlinear``).
        box_count: (N,) long; box_corner, box_size: (N, slots, n_spatial) long: the boxes of the
            sample's painting (in-painting boxes where ``inpaint``, out-painting boxes otherwise).
        seeds: (N,) int64 CPU: per-sample random streams of the compiled kernel.
        torch_seed: seed of the one random stream the torch kernels draw the batch's voxel-level
            randomness from.
    """

    flip_dims: Tuple[int, ...]
    flip: torch.Tensor
    local: torch.Tensor
    nonlinear: torch.Tensor
    inpaint: torch.Tensor
    outpaint: torch.Tensor
    points: torch.Tensor
    invert: torch.Tensor
    box_count: torch.Tensor
    box_corner: torch.Tensor
    box_size: torch.Tensor
    seeds: torch.Tensor
    torch_seed: int

    @property
    def n(self) -> int:
        return int(self.local.shape[0])

    def flip_flags(self) -> torch.Tensor:
        """(N,) uint8 CPU flip bits of the compiled kernel."""
        flags = torch.zeros(self.n, dtype=torch.uint8)
        parity = self.flip.cpu()
        for k, dim in enumerate(self.flip_dims):
            flags |= parity[:, k].to(torch.uint8) * _FLIP_BIT[dim]
        return flags

    def degradation_flags(self) -> torch.Tensor:
        """(N,) uint8 CPU degradation bits (shuffle, Bezier, in-/out-painting) of the compiled kernel."""
        flags = self.local.cpu().to(torch.uint8) * cpu_kernel.SHUFFLE
        flags |= self.nonlinear.cpu().to(torch.uint8) * cpu_kernel.BEZIER
        flags |= self.inpaint.cpu().to(torch.uint8) * cpu_kernel.INPAINT
        flags |= self.outpaint.cpu().to(torch.uint8) * cpu_kernel.OUTPAINT
        return flags


def _decide(mode: str, n: int, rates: Tuple[float, float, float, float], device: torch.device | str,
            g: Optional[torch.Generator]) -> Tuple[torch.Tensor, ...]:
    """Per-sample (local, nonlinear, inpaint, outpaint) bool masks, each (n,)."""
    if mode == "sequential":
        local_rate, nonlinear_rate, paint_rate, inpaint_rate = rates
        u = torch.rand((n, 4), generator=g, device=device)
        local = u[:, 0] < local_rate
        nonlinear = u[:, 1] < nonlinear_rate
        paint = u[:, 2] < paint_rate
        inpaint = paint & (u[:, 3] < inpaint_rate)
        return local, nonlinear, inpaint, paint & ~inpaint
    choice = torch.randint(0, 4, (n,), generator=g, device=device)
    return tuple(choice == k for k in range(4))


def draw_plan(n: int, spatial: Sequence[int], device: torch.device | str, g: Optional[torch.Generator], *,
              mode: str = "sequential", flip_rate: float = 0.4, flip_rule: str = "reference",
              local_rate: float = 0.5, nonlinear_rate: float = 0.9, paint_rate: float = 0.9,
              inpaint_rate: float = 0.2, inpaint_boxes: Tuple[int, int] = (0, 5),
              outpaint_boxes: Tuple[int, int] = (1, 5), box_continue_prob: float = 0.95) -> DegradePlan:
    """Draw the plan of a batch of ``n`` samples of shape (C, *spatial) from ``g`` on ``device``.

    Order of the draws (fixed, and the same for every kernel): flip parity (skipped when
    ``flip_rate`` is 0), decisions, Bezier parameters, in-painting count and boxes, out-painting
    count and boxes, per-sample seeds, the torch seed. ``mode="one_of"`` ignores the four rates.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    spatial = tuple(int(s) for s in spatial)
    dims = tuple(flip_dims(flip_rule, len(spatial) + 2))
    if flip_rate > 0:
        flip = flip_parity(n, flip_rate, len(dims), g, device)
    else:
        flip = torch.zeros((n, len(dims)), dtype=torch.bool, device=device)
    local, nonlinear, inpaint, outpaint = _decide(mode, n, (local_rate, nonlinear_rate, paint_rate, inpaint_rate),
                                                  device, g)
    points, invert = sample_bezier_params(n, g, device)
    slots = max(1, inpaint_boxes[1], outpaint_boxes[1])
    in_count = sample_box_counts(n, *inpaint_boxes, box_continue_prob, g, device)
    in_corner, in_size = sample_inpaint_boxes(spatial, n, slots, g, device)
    out_count = sample_box_counts(n, *outpaint_boxes, box_continue_prob, g, device)
    out_corner, out_size = sample_outpaint_boxes(spatial, n, slots, g, device)
    seeds = sample_seeds(n + 1, g)  # the last one seeds the torch kernels' stream
    sel = inpaint.view(n, 1, 1)
    return DegradePlan(flip_dims=dims, flip=flip, local=local, nonlinear=nonlinear, inpaint=inpaint,
                       outpaint=outpaint, points=points, invert=invert,
                       box_count=torch.where(inpaint, in_count, out_count),
                       box_corner=torch.where(sel, in_corner, out_corner),
                       box_size=torch.where(sel, in_size, out_size),
                       seeds=seeds[:n], torch_seed=int(seeds[n]) % (2**63))
