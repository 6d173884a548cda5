"""The Models Genesis flip (METHODS.md §1, step 1), applied alike to the input and the target.

Up to 3 flips while a coin with ``prob`` succeeds, each along an axis drawn uniformly from the
rule's candidate axes: ``"reference"`` draws from the first three axes of a (C, X, Y[, Z]) sample
(the published quirk: a channel flip is a no-op for C=1 and Z is never flipped), ``"spatial"``
from all spatial axes. The decisions come from :func:`.sampling.flip_parity`.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from .sampling import flip_parity
from . import validation

__all__ = ["FLIP_RULES", "flip_dims", "apply_flip", "flip_pair"]

FLIP_RULES = ("reference", "spatial")


def flip_dims(rule: str, ndim: int) -> List[int]:
    """Candidate flip dimensions of a batch with ``ndim`` dims (N, C, *spatial), in parity order."""
    if rule == "reference":
        return [1, 2, 3]
    if rule == "spatial":
        return list(range(2, ndim))
    raise ValueError(f"flip rule must be one of {FLIP_RULES}, got {rule!r}")


def apply_flip(tensors: Sequence[torch.Tensor], parity: torch.Tensor, dims: Sequence[int]) -> List[torch.Tensor]:
    """Flip sample i of every tensor (each (N, C, *spatial)) along ``dims[k]`` where
    ``parity[i, k]`` ((N, len(dims)) bool). Returns new tensors; the inputs are not written to.
    (A loop over at most 3 axes, each one batched over the samples it flips.)"""
    out = [t.clone() for t in tensors]
    for k, dim in enumerate(dims):
        idx = parity[:, k].nonzero().flatten()
        if idx.numel():
            for t in out:
                t[idx] = t[idx].flip(dim)
    return out


def flip_pair(x: torch.Tensor, y: torch.Tensor, prob: float = 0.4, rule: str = "reference",
              generator: Optional[torch.Generator] = None, max_flips: int = 3, check_range: bool = True
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flip ``x`` and ``y`` (same shape (N, C, X, Y[, Z]), values in [0, 1]) alike, per sample.

    ``rule``: ``"reference"`` or ``"spatial"`` (module docstring). ``check_range``: reject values
    outside [0, 1] and NaN (one pass per tensor). Returns (x, y, parity (N, n_axes) bool),
    new tensors.
    """
    validation.check_batch(x, "flip_pair x")
    if y.shape != x.shape:
        raise ValueError(f"flip_pair: x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    dims = flip_dims(rule, x.ndim)
    if check_range:
        validation.check_range(x, "flip_pair x")
        if y is not x:
            validation.check_range(y, "flip_pair y")
    parity = flip_parity(x.shape[0], prob, len(dims), generator, x.device, max_flips)
    if y is x:
        fx = apply_flip([x], parity, dims)[0]
        return fx, fx.clone(), parity
    fx, fy = apply_flip([x, y], parity, dims)
    return fx, fy, parity

