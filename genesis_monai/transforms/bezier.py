"""Models Genesis non-linear intensity map (METHODS.md §1, step 3): a random cubic Bezier curve.

The curve through (0,0), (a,b), (c,d), (1,1) is tabulated at ``n_points`` values of t; its
x-samples are sorted, its y-samples too unless the sample drew the intensity-inverting branch;
intensities are mapped by piecewise-linear interpolation on that table (clamped at the ends, like
``np.interp``). The curve parameters come from :func:`.sampling.sample_bezier_params`: the kernels
here take them pre-drawn and draw nothing themselves.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from . import cpu_kernel, validation
from .chunking import default_chunk
from .kernel_choice import choose_kernel

__all__ = ["bezier_tables", "bezier_map", "bezier_torch"]

#: the torch Bezier kernel measured best at ~2^18 voxels (two 64x64x32 cubes) per chunk on CPU
_BEZIER_CHUNK_VOXELS = 1 << 18


def bezier_tables(points: torch.Tensor, invert: torch.Tensor, n_points: int = 4096
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The curve through (0,0), (a,b), (c,d), (1,1) sampled at ``n_points`` equally spaced t
    (Bernstein weight of point i: C(3,i) t^(3-i) (1-t)^i), x-samples sorted; y-samples sorted
    too unless ``invert``. Returns (xs, ys), each (n, n_points) float64."""
    t = torch.linspace(0.0, 1.0, n_points, device=points.device, dtype=torch.float64)
    w1 = 3.0 * t * t * (1 - t)
    w2 = 3.0 * t * (1 - t) * (1 - t)
    w3 = (1 - t) ** 3
    a, b, c, d = (points[:, k: k + 1] for k in range(4))
    xs = a * w1 + c * w2 + w3
    ys = b * w1 + d * w2 + w3
    xs = _sort_rows(xs)
    ys = torch.where(invert.unsqueeze(1), ys, _sort_rows(ys))
    return xs, ys


def _sort_rows(a: torch.Tensor) -> torch.Tensor:
    """Sorted copy of each row; on CPU NumPy's SIMD sort (measured ~8x faster than torch.sort
    on (32, 4096) float64 here; the sorted values are the same)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.sort(a.numpy(), axis=1))
    return torch.sort(a, dim=1).values


def bezier_map(x: torch.Tensor, points: torch.Tensor, invert: torch.Tensor, n_points: int = 4096,
               lut_size: Optional[int] = None, chunk: Optional[int] = None, kernel: str = "auto",
               check_range: bool = True) -> torch.Tensor:
    """Map each sample of ``x`` (N, C, X, Y[, Z]), values in [0, 1], through its Bezier curve by
    piecewise-linear interpolation on the ``n_points`` curve table (values outside the table's
    x-range clamp to its ends, like ``np.interp``); ``points`` (N, 4), ``invert`` (N,) as from
    :func:`.sampling.sample_bezier_params`. Returns a new tensor like ``x``.

    ``lut_size=None`` (default) interpolates on the table itself (the reference law; measured
    within 3e-6 of the 100,000-point reference): a per-voxel search, kept short by first bucketing
    the table on a uniform grid. An integer instead interpolates a uniform look-up table of that
    many intensities (faster, but the error reaches ~1e-2 at 4,097 and ~1e-4 at 16,385 near a
    vertical tangent of the curve; a named approximation; torch only). ``chunk``: samples the
    torch kernel maps together. ``kernel``: "auto", "torch" or "c" (:mod:`.kernel_choice`).
    ``check_range``: reject values outside [0, 1] and NaN (one pass over the batch,
    :func:`.validation.check_range`).
    """
    validation.check_batch(x, "bezier_map x")
    if check_range:
        validation.check_range(x, "bezier_map x")
    N = x.shape[0]
    if N == 0:
        return x.clone()
    if choose_kernel(x, kernel, bezier_lut_size=lut_size).name == "c":
        flags = torch.full((N,), cpu_kernel.BEZIER, dtype=torch.uint8)
        return cpu_kernel.degrade(x, flags, torch.zeros(N, dtype=torch.int64), points=points, invert=invert,
                                  n_points=n_points)
    return bezier_torch(x, points, invert, n_points, lut_size, chunk)


def bezier_torch(x: torch.Tensor, points: torch.Tensor, invert: torch.Tensor, n_points: int = 4096,
                 lut_size: Optional[int] = None, chunk: Optional[int] = None) -> torch.Tensor:
    """The torch implementation of :func:`bezier_map` (no checks, any device, draws nothing)."""
    N = x.shape[0]
    if N == 0:
        return x.clone()
    chunk = default_chunk(chunk, x.device, math.prod(x.shape[2:]), budget=_BEZIER_CHUNK_VOXELS)
    if N > chunk:
        return torch.cat([_bezier_chunk(x[i: i + chunk], points[i: i + chunk], invert[i: i + chunk], n_points,
                                        lut_size) for i in range(0, N, chunk)])
    return _bezier_chunk(x, points, invert, n_points, lut_size)


def _bezier_chunk(x: torch.Tensor, points: torch.Tensor, invert: torch.Tensor, n_points: int,
                  lut_size: Optional[int]) -> torch.Tensor:
    N = x.shape[0]
    xs, ys = bezier_tables(points.to(x.device, torch.float64), invert.to(x.device), n_points)
    flat = x.reshape(N, -1)
    if lut_size is not None:
        grid = torch.linspace(0.0, 1.0, lut_size, device=x.device, dtype=torch.float64).expand(N, -1).contiguous()
        lut = _interp(grid, xs, ys).to(torch.float32)  # (N, G)
        lut = torch.cat([lut, lut[:, -1:]], 1).view(-1)  # a pad column so "lo + 1" never runs off a row
        pos = torch.clamp(flat, 0.0, 1.0).to(torch.float32).mul_(lut_size - 1)
        lo = pos.to(torch.long)
        frac = pos.sub_(lo)
        lo += (torch.arange(N, device=x.device) * (lut_size + 1)).unsqueeze(1)
        lo = lo.view(-1)
        v0 = torch.index_select(lut, 0, lo)
        v1 = torch.index_select(lut, 0, lo.add_(1))
        return v0.lerp_(v1, frac.view(-1)).to(x.dtype).view(x.shape)
    return _bucketed_interp(flat, xs, ys).to(x.dtype).view(x.shape)


def _bucketed_interp(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, cells_per_point: int = 4) -> torch.Tensor:
    """Row-wise ``np.interp(v[i], xs[i], ys[i])`` (v (N, P), xs/ys (N, T), xs sorted in [0, 1]).

    A uniform grid of G cells over [0, 1] is laid over each table; counting table points per
    cell gives, for every cell, the range of table intervals a value in it can fall into. Each
    voxel then binary-searches only that range: ceil(log2(most points in a cell + 1)) gathers
    instead of log2(T), and no per-voxel ``searchsorted`` call.
    """
    N, T = xs.shape
    device = v.device
    G = 1 << (cells_per_point * T - 1).bit_length()  # a power of two: v * G is exact in float
    xs32 = xs.to(torch.float32)
    # cells from the float32 values that the search compares against, so the bounds are exact
    cell_of_point = (xs32.double() * G).floor_().long().clamp_(0, G - 1)
    counts = torch.zeros((N, G), dtype=torch.long, device=device)
    counts.scatter_add_(1, cell_of_point, torch.ones_like(cell_of_point))
    hi_of_cell = torch.cumsum(counts, 1) - 1  # last index with cell <= g
    lo_of_cell = hi_of_cell - counts  # last index with cell < g (-1 if none)
    vf = v.to(torch.float32)
    cell = (vf.clamp(0.0, 1.0) * G).long().clamp_(max=G - 1)
    if int(counts.max()) <= 1:
        return _one_step_interp(vf, xs32, ys.to(torch.float32), lo_of_cell, cell)
    steps = int(counts.max()).bit_length()
    lo = torch.gather(lo_of_cell, 1, cell)
    hi = torch.gather(hi_of_cell, 1, cell)
    # invariant: the answer (last index with xs <= v, or -1) lies in [lo, hi]
    xs_flat = xs32.reshape(-1)
    base = (torch.arange(N, device=device) * T).unsqueeze(1)
    for _ in range(steps):
        mid = (lo + hi + 1) >> 1
        ok = torch.index_select(xs_flat, 0, (mid.clamp(min=0) + base).view(-1)).view(N, -1) <= vf
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid - 1)
    lo = lo.clamp_(0, T - 2).add_(base).view(-1)
    x0 = torch.index_select(xs_flat, 0, lo)
    y0 = torch.index_select(ys.to(torch.float32).reshape(-1), 0, lo)
    lo += 1
    x1 = torch.index_select(xs_flat, 0, lo)
    y1 = torch.index_select(ys.to(torch.float32).reshape(-1), 0, lo)
    w = (vf.view(-1) - x0).div_((x1 - x0).clamp_min_(1e-30)).clamp_(0.0, 1.0)
    return y0.lerp_(y1, w).view(N, -1)


def _one_step_interp(vf: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, lo_of_cell: torch.Tensor,
                     cell: torch.Tensor) -> torch.Tensor:
    """The common case of :func:`_bucketed_interp`: at most one table point per cell, so a value
    falls in interval lo_of_cell or the next one, decided by one comparison. Per-cell (threshold,
    interval) and per-interval (x0, y0, slope) rows are fetched with one gather each."""
    N, T = xs.shape
    device = vf.device
    G = lo_of_cell.shape[1]
    nxt = (lo_of_cell + 1).clamp_(max=T - 1)
    thr = torch.gather(xs, 1, nxt)
    thr = torch.where(lo_of_cell + 1 <= T - 1, thr, torch.full_like(thr, float("inf")))
    cell_rows = torch.stack([thr, lo_of_cell.to(torch.float32)], -1).view(N * G, 2)
    slope = (ys[:, 1:] - ys[:, :-1]) / (xs[:, 1:] - xs[:, :-1]).clamp_min(1e-30)
    interval_rows = torch.stack([xs[:, :-1], ys[:, :-1], slope], -1).view(N * (T - 1), 3)
    # values outside the table clamp to its ends (np.interp)
    v = torch.minimum(torch.maximum(vf, xs[:, :1]), xs[:, -1:])
    cell += (torch.arange(N, device=device) * G).unsqueeze(1)
    c = torch.index_select(cell_rows, 0, cell.view(-1))
    j = c[:, 1].add_((v.view(-1) >= c[:, 0]).to(torch.float32)).clamp_(0, T - 2).to(torch.long)
    j = j.view(N, -1).add_((torch.arange(N, device=device) * (T - 1)).unsqueeze(1)).view(-1)
    r = torch.index_select(interval_rows, 0, j)
    out = v.view(-1).sub(r[:, 0]).mul_(r[:, 2]).add_(r[:, 1])
    return out.view(N, -1)


def _interp(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.interp(v[i], xs[i], ys[i])``: v (N, P), xs/ys (N, T), xs sorted."""
    T = xs.shape[1]
    hi = torch.searchsorted(xs, v, right=True).clamp_(1, T - 1)
    lo = hi - 1
    x0, x1 = xs.gather(1, lo), xs.gather(1, hi)
    y0, y1 = ys.gather(1, lo), ys.gather(1, hi)
    w = ((v - x0) / (x1 - x0).clamp_min(torch.finfo(xs.dtype).tiny)).clamp_(0.0, 1.0)
    out = y0 + w * (y1 - y0)
    # np.interp clamps outside the table to the end values
    out = torch.where(v <= xs[:, :1], ys[:, :1], out)
    return torch.where(v >= xs[:, -1:], ys[:, -1:], out)
