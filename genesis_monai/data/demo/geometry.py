"""Geometry toolkit of the procedural phantoms: voxel grids in mm, smoothing, correlated noise, tubes, trees.

Everything is vectorised NumPy (no per-voxel loops) and takes its randomness from a
``numpy.random.Generator`` passed in, so a phantom built on these helpers is deterministic by seed.
Coordinates are in mm with the origin at the volume centre (:class:`Grid`); arrays are (X, Y, Z).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "Grid",
    "smooth",
    "correlated_noise",
    "component_containing",
    "unit",
    "random_perpendicular",
    "random_rotation",
    "ellipse_radius",
    "draw_tube",
    "grow_tree",
]


def smooth(arr: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Separable Gaussian blur (edge values repeated), float32; sigmas in voxels per axis."""
    out = arr.astype(np.float32, copy=True)
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0 or out.shape[axis] < 2:
            continue
        radius = int(np.ceil(3.0 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps = (taps / taps.sum()).astype(np.float32)
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.moveaxis(np.pad(out, pad, mode="edge"), axis, 0)
        n = out.shape[axis]
        acc = taps[0] * padded[:n]
        for k in range(1, len(taps)):
            acc += taps[k] * padded[k:k + n]
        out = np.ascontiguousarray(np.moveaxis(acc, 0, axis))
    return out


def correlated_noise(rng: np.random.Generator, shape: Sequence[int], sigmas: Sequence[float]) -> np.ndarray:
    """Smoothed white noise rescaled to unit standard deviation (float32)."""
    noise = smooth(rng.standard_normal(tuple(shape), dtype=np.float32), sigmas)
    std = float(noise.std())
    return noise / (std if std > 0 else 1.0)


def component_containing(mask: np.ndarray, seed: Tuple[int, ...]) -> np.ndarray:
    """The 6-connected component of boolean ``mask`` that holds voxel ``seed`` (small arrays)."""
    grown = np.zeros_like(mask)
    if not mask[seed]:
        return grown
    grown[seed] = True
    while True:
        nxt = grown.copy()
        nxt[1:] |= grown[:-1]
        nxt[:-1] |= grown[1:]
        nxt[:, 1:] |= grown[:, :-1]
        nxt[:, :-1] |= grown[:, 1:]
        nxt[:, :, 1:] |= grown[:, :, :-1]
        nxt[:, :, :-1] |= grown[:, :, 1:]
        nxt &= mask
        if np.array_equal(nxt, grown):
            return grown
        grown = nxt


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def random_perpendicular(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    while True:
        v = rng.standard_normal(3)
        v -= v.dot(d) * d
        if np.linalg.norm(v) > 1e-3:
            return unit(v)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


class Grid:
    """Voxel-centre coordinates in mm (origin at the volume centre) and mm <-> index helpers."""

    def __init__(self, shape: Tuple[int, int, int], spacing: Tuple[float, float, float]):
        self.shape = shape
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.origin = -(np.asarray(shape, dtype=np.float64) - 1.0) / 2.0 * self.spacing
        self.axes = [(self.origin[a] + np.arange(shape[a]) * self.spacing[a]).astype(np.float32) for a in range(3)]
        self.x = self.axes[0][:, None, None]
        self.y = self.axes[1][None, :, None]
        self.z = self.axes[2][None, None, :]
        self.extent = np.asarray(shape, dtype=np.float64) * self.spacing
        self.edge = float(min(spacing[0], spacing[1]))  # width of the soft (partial-volume) edges

    def affine(self) -> np.ndarray:
        """4x4 RAS affine: diagonal ``spacing``, the volume centred on the origin."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Optional[Tuple[slice, slice, slice]]:
        """Index slices of the voxels whose centres lie in the mm box [lo, hi] (None if empty)."""
        i0 = np.ceil((lo - self.origin) / self.spacing).astype(int)
        i1 = np.floor((hi - self.origin) / self.spacing).astype(int) + 1
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, self.shape)
        if np.any(i1 <= i0):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(i0, i1))  # type: ignore[return-value]

    def coords(self, box: Tuple[slice, slice, slice]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mm coordinates of the voxels in ``box``, broadcastable: (x, 1, 1), (1, y, 1), (1, 1, z)."""
        return (self.axes[0][box[0]][:, None, None], self.axes[1][box[1]][None, :, None],
                self.axes[2][box[2]][None, None, :])

    def lookup(self, mask: np.ndarray, p: np.ndarray) -> bool:
        """Whether point ``p`` (mm) lies in a voxel of ``mask`` (False outside the volume)."""
        idx = tuple(int(round((float(p[k]) - self.origin[k]) / self.spacing[k])) for k in range(3))
        if not all(0 <= i < n for i, n in zip(idx, self.shape)):
            return False
        return bool(mask[idx])


def ellipse_radius(gx, gy, cx, cy, a, b) -> np.ndarray:
    """Normalised elliptical radius (< 1 inside)."""
    return np.sqrt(((gx - cx) / a) ** 2 + ((gy - cy) / b) ** 2)


def draw_tube(grid: Grid, occ: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
               extra: float = 0.0) -> None:
    """Max-accumulate the soft occupancy of a tapered tube (segment a->b, radii ra->rb, + extra) into ``occ``."""
    r_max = max(ra, rb) + extra + grid.edge
    box = grid.box(np.minimum(a, b) - r_max, np.maximum(a, b) + r_max)
    if box is None:
        return
    px, py, pz = grid.coords(box)
    ab = (b - a).astype(np.float32)
    denom = max(float(ab.dot(ab)), 1e-9)
    t = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1] + (pz - a[2]) * ab[2]) / denom
    np.clip(t, 0.0, 1.0, out=t)
    d = np.sqrt((px - a[0] - t * ab[0]) ** 2 + (py - a[1] - t * ab[1]) ** 2 + (pz - a[2] - t * ab[2]) ** 2)
    r = ra + t * (rb - ra) + extra
    value = np.clip((r - d) / grid.edge + 0.5, 0.0, 1.0).astype(np.float32)
    np.maximum(occ[box], value, out=occ[box])


def grow_tree(rng: np.random.Generator, grid: Grid, inside: np.ndarray, roots: Sequence[Tuple[np.ndarray, np.ndarray]],
               radius: float, length_per_radius: float, min_radius: float, max_depth: int,
               angle_deg: Tuple[float, float], tries: int = 4) -> List[Tuple[np.ndarray, np.ndarray, float, float]]:
    """Segments (start, end, r_start, r_end) of a bifurcating tree grown from ``roots`` (point, direction).

    Radii split by Murray's law (r^3 = r1^3 + r2^3) with a random asymmetry, lengths are
    proportional to radius, branching angles are drawn in ``angle_deg``; a branch whose end or
    middle leaves ``inside`` is bent and shortened, up to ``tries`` times, then dropped.
    """
    segments = []
    stack = [(np.asarray(p, float), unit(np.asarray(d, float)), radius, 0) for p, d in roots]
    while stack:
        start, direction, r, depth = stack.pop()
        length = r * length_per_radius * rng.uniform(0.8, 1.25)
        end = None
        for attempt in range(tries):
            if attempt:  # bend away from the obstacle: a new direction near the intended one, shorter
                length *= 0.75
                direction = unit(direction + 0.6 * random_perpendicular(rng, direction))
            cand = start + direction * length
            if grid.lookup(inside, cand) and (depth == 0 or grid.lookup(inside, start + 0.5 * direction * length)):
                end = cand
                break
        if end is None:
            continue
        f = rng.uniform(0.72, 0.9)
        r1 = r * f
        r2 = max(r ** 3 - r1 ** 3, 1e-9) ** (1.0 / 3.0)
        segments.append((start, end, r, 0.5 * (r + max(r1, r2))))
        if depth + 1 > max_depth:
            continue
        axis = random_perpendicular(rng, direction)
        for child_r, sign in ((r1, 1.0), (r2, -1.0)):
            if child_r < min_radius:
                continue
            theta = np.deg2rad(rng.uniform(*angle_deg)) * (0.7 if child_r == r1 else 1.0)
            d_new = unit(np.cos(theta) * direction + sign * np.sin(theta) * axis)
            stack.append((end, d_new, child_r, depth + 1))
    return segments

