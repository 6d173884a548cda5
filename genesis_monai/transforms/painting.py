"""Models Genesis in-painting and out-painting (METHODS.md §1, step 4).

In-painting fills the union of a sample's boxes with U[0, 1) noise; out-painting replaces the
sample by U[0, 1) noise except inside the union of its boxes, which keeps the original. The noise
of a voxel is shared by its channels. Box counts and boxes come from :mod:`.sampling`;
:func:`paint_boxes` takes them pre-drawn (only the noise is drawn there), :func:`in_paint` and
:func:`out_paint` draw them with the published laws and call it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from . import cpu_kernel, validation
from .kernel_choice import choose_kernel
from .sampling import sample_box_counts, sample_inpaint_boxes, sample_outpaint_boxes, sample_seeds

__all__ = ["PAINT_FILLS", "box_union_mask", "paint_torch", "paint_boxes", "in_paint", "out_paint"]

#: ``"inside"``: noise inside the boxes (in-painting); ``"outside"``: noise outside them (out-painting)
PAINT_FILLS = ("inside", "outside")


def box_union_mask(spatial: Sequence[int], corner: torch.Tensor, size: torch.Tensor,
                   count: torch.Tensor) -> torch.Tensor:
    """Union of the first ``count[i]`` boxes of each sample: (n, *spatial) bool.
    ``corner``/``size``: (n, slots, n_spatial) long, ``count``: (n,) long."""
    n, n_slots, d = corner.shape
    device = corner.device
    active = (torch.arange(n_slots, device=device) < count.to(device).unsqueeze(1)).float()  # (n, slots)
    inside = []
    for axis in range(d):
        ar = torch.arange(spatial[axis], device=device)
        lo = corner[:, :, axis: axis + 1]
        inside.append(((ar >= lo) & (ar < lo + size[:, :, axis: axis + 1])).float())  # (n, slots, D)
    # how many boxes cover each voxel, as a small batched matrix product over box slots
    first = inside[0] * active.unsqueeze(2)
    if d == 2:
        cover = torch.bmm(first.transpose(1, 2), inside[1])
    else:
        xy = (first.unsqueeze(3) * inside[1].unsqueeze(2)).view(n, n_slots, -1)  # (n, slots, X*Y)
        cover = torch.bmm(xy.transpose(1, 2), inside[2])
    return (cover > 0.5).view(n, *spatial)


def paint_torch(x: torch.Tensor, mask: torch.Tensor, fill: str, generator: Optional[torch.Generator] = None
                ) -> torch.Tensor:
    """Torch painting of ``x`` (N, C, *spatial) given its box union ``mask`` (N, *spatial) bool:
    U[0, 1) noise (one value per voxel, shared by the channels) where ``fill`` says. No checks."""
    # full-cube noise and one select: measured faster on CPU than drawing noise for the masked
    # voxels only (a boolean index_put costs more than the RNG it saves); same law
    noise = torch.rand((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device, dtype=x.dtype)
    m = mask.unsqueeze(1)
    return torch.where(m, noise, x) if fill == "inside" else torch.where(m, x, noise)


def paint_boxes(x: torch.Tensor, count: torch.Tensor, corner: torch.Tensor, size: torch.Tensor, fill: str = "inside",
                generator: Optional[torch.Generator] = None, kernel: str = "auto", check_range: bool = True
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Paint ``x`` (N, C, X, Y[, Z]), values in [0, 1], with pre-drawn boxes: ``count`` (N,) long,
    ``corner``/``size`` (N, slots, n_spatial) long (each active box inside the sample).

    ``fill="inside"``: in-painting, ``"outside"``: out-painting. Only the noise is drawn here
    (from ``generator``; the compiled kernel draws it from per-sample seeds taken from
    ``generator``). ``kernel``: "auto", "torch" or "c" (:mod:`.kernel_choice`). ``check_range``:
    reject values outside [0, 1] and NaN. Returns (painted, box union mask (N, *spatial) bool).
    """
    validation.check_batch(x, "paint_boxes x")
    if fill not in PAINT_FILLS:
        raise ValueError(f"fill must be one of {PAINT_FILLS}, got {fill!r}")
    if check_range:
        validation.check_range(x, "paint_boxes x")
    spatial = tuple(x.shape[2:])
    mask = box_union_mask(spatial, corner, size, count)
    if choose_kernel(x, kernel, max_boxes=corner.shape[1]).name == "c":
        flags = torch.full((x.shape[0],), cpu_kernel.INPAINT if fill == "inside" else cpu_kernel.OUTPAINT,
                           dtype=torch.uint8)
        painted = cpu_kernel.degrade(x, flags, sample_seeds(x.shape[0], generator), box_count=count.cpu(),
                                     box_corner=corner.cpu(), box_size=size.cpu())
        return painted, mask
    return paint_torch(x, mask, fill, generator), mask


def in_paint(x: torch.Tensor, generator: Optional[torch.Generator] = None, min_boxes: int = 0, max_boxes: int = 5,
             continue_prob: float = 0.95, kernel: str = "auto", check_range: bool = True
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """In-paint ``x`` (N, C, X, Y[, Z]), values in [0, 1]: ``min_boxes``..``max_boxes`` boxes per
    sample (size D//6..D//3 per axis) filled with U[0, 1) noise. Returns (painted, mask (N, *spatial)
    bool). ``kernel``, ``check_range``: as in :func:`paint_boxes`."""
    validation.check_batch(x, "in_paint x")
    if check_range:
        validation.check_range(x, "in_paint x")
    N, spatial = x.shape[0], tuple(x.shape[2:])
    count = sample_box_counts(N, min_boxes, max_boxes, continue_prob, generator, x.device)
    corner, size = sample_inpaint_boxes(spatial, N, max(1, max_boxes), generator, x.device)
    return paint_boxes(x, count, corner, size, "inside", generator, kernel, check_range=False)


def out_paint(x: torch.Tensor, generator: Optional[torch.Generator] = None, min_boxes: int = 1, max_boxes: int = 5,
              continue_prob: float = 0.95, kernel: str = "auto", check_range: bool = True
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Out-paint ``x`` (N, C, X, Y[, Z]), values in [0, 1]: U[0, 1) noise everywhere except inside
    ``min_boxes``..``max_boxes`` boxes (size D - U[3D//7, 4D//7] per axis) that keep the original.
    Returns (painted, kept mask (N, *spatial) bool). ``kernel``, ``check_range``: as in
    :func:`paint_boxes`."""
    validation.check_batch(x, "out_paint x")
    if check_range:
        validation.check_range(x, "out_paint x")
    N, spatial = x.shape[0], tuple(x.shape[2:])
    count = sample_box_counts(N, min_boxes, max_boxes, continue_prob, generator, x.device)
    corner, size = sample_outpaint_boxes(spatial, N, max(1, max_boxes), generator, x.device)
    return paint_boxes(x, count, corner, size, "outside", generator, kernel, check_range=False)
