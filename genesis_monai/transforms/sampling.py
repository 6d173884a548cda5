"""The shared random samplers of the degradations (METHODS.md §1, "Degradations").

Both kernels (compiled C and vectorised torch) and every entry point (the functional kernels,
the MONAI transforms, :class:`.batch.GenesisDegrade`'s plan) draw decisions, curves and boxes
here, per batch, from one ``generator`` (a ``torch.Generator`` on ``device``, or None for torch's
global generator). Everything is vectorised over samples; nothing here touches voxels.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

__all__ = ["uniform_int", "sample_seeds", "flip_parity", "sample_bezier_params", "sample_box_counts",
           "sample_inpaint_boxes", "sample_outpaint_boxes", "inpaint_size_range", "outpaint_size_range"]


def uniform_int(low: torch.Tensor, high: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive, elementwise; long tensors of one shape).
    One float64 draw per element keeps the bias below 2^-40."""
    u = torch.rand(low.shape, generator=generator, device=low.device, dtype=torch.float64)
    span = (high - low + 1).clamp(min=1)
    return low + (u * span).long().clamp(max=span - 1)


def sample_seeds(n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(n,) int64 CPU seeds, uniform over all int64 values: the per-sample random streams of the
    compiled kernel (drawn on the generator's device, then moved to the CPU)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(-(2**63), 2**63 - 1, (n,), generator=generator, device=device, dtype=torch.int64).cpu()


def flip_parity(n: int, prob: float, n_axes: int, generator: Optional[torch.Generator] = None,
                device: torch.device | str = "cpu", max_flips: int = 3) -> torch.Tensor:
    """Per-sample flip decisions: up to ``max_flips`` flips while a coin with ``prob`` succeeds,
    each along one of ``n_axes`` candidate axes drawn uniformly. Returns (n, n_axes) bool: whether
    each axis ends up flipped (two flips along one axis cancel)."""
    coins = torch.rand((n, max_flips), generator=generator, device=device) < prob
    done = coins.long().cumprod(dim=1).bool()  # flip k happens only if coins 0..k all succeeded
    axes = torch.randint(0, n_axes, (n, max_flips), generator=generator, device=device)
    counts = torch.zeros((n, n_axes), dtype=torch.long, device=device)
    counts.scatter_add_(1, axes, done.long())
    return counts % 2 == 1


def sample_bezier_params(n: int, generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
                         invert_prob: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per sample: inner control points (a, b, c, d) uniform in [0, 1) -> (n, 4) float64, and
    whether the map is the intensity-inverting branch -> (n,) bool."""
    points = torch.rand((n, 4), generator=generator, device=device, dtype=torch.float64)
    invert = torch.rand(n, generator=generator, device=device) < invert_prob
    return points, invert


def sample_box_counts(n: int, min_boxes: int, max_boxes: int, continue_prob: float = 0.95,
                      generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``min_boxes`` for sure, then one more while a coin with ``continue_prob`` succeeds, up to
    ``max_boxes``. Returns (n,) long. (0, 5): the in-painting law; (1, 5): out-painting."""
    extra = max(0, max_boxes - min_boxes)
    coins = torch.rand((n, extra), generator=generator, device=device) < continue_prob
    return min_boxes + coins.long().cumprod(1).sum(1)


def inpaint_size_range(spatial: Sequence[int]) -> Tuple[List[int], List[int]]:
    """In-painting box sizes per axis: [D//6, D//3] (at least 1)."""
    return [max(1, s // 6) for s in spatial], [max(1, s // 3) for s in spatial]


def outpaint_size_range(spatial: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Out-painting box sizes per axis: D - U[3D//7, 4D//7], i.e. [D - 4D//7, D - 3D//7]."""
    return [s - 4 * s // 7 for s in spatial], [s - 3 * s // 7 for s in spatial]


def _boxes(spatial: Sequence[int], n: int, n_slots: int, size_low: List[int], size_high: List[int],
           generator: Optional[torch.Generator], device: torch.device | str) -> Tuple[torch.Tensor, torch.Tensor]:
    d = len(spatial)
    dims = torch.tensor(list(spatial), device=device)
    lo = torch.tensor(size_low, device=device).expand(n, n_slots, d)
    hi = torch.tensor(size_high, device=device).expand(n, n_slots, d)
    size = torch.minimum(uniform_int(lo, hi, generator), dims)
    # corner in [3, D - size - 3]; on axes too short for that margin, the widest valid range
    c_lo = torch.full_like(size, 3)
    c_hi = dims - size - 3
    short = c_hi < c_lo
    c_lo = torch.where(short, torch.zeros_like(size), c_lo)
    c_hi = torch.where(short, dims - size, c_hi)
    return uniform_int(c_lo, c_hi, generator), size


def sample_inpaint_boxes(spatial: Sequence[int], n: int, n_slots: int, generator: Optional[torch.Generator] = None,
                         device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """In-painting boxes: size per axis uniform in [D//6, D//3], corner in [3, D - size - 3].
    Returns (corner, size), each (n, n_slots, n_spatial) long."""
    return _boxes(spatial, n, n_slots, *inpaint_size_range(spatial), generator, device)


def sample_outpaint_boxes(spatial: Sequence[int], n: int, n_slots: int, generator: Optional[torch.Generator] = None,
                          device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """Out-painting boxes: size D - U[3D//7, 4D//7] per axis, corner in [3, D - size - 3].
    Returns (corner, size), each (n, n_slots, n_spatial) long."""
    return _boxes(spatial, n, n_slots, *outpaint_size_range(spatial), generator, device)
