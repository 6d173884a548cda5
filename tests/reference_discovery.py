"""Plain-loop oracles of self-discovery step 3 (research/upstream_genesis.md §6.3), for the tests only.

Written from the description, loop for loop and on purpose slow: per-volume distances, per-trial
corner tests with the per-voxel rule of ``reference_cubes``, per-instance crops and resizes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from reference_cubes import reference_reject


def loop_neighbours(query: np.ndarray, features: np.ndarray, k: int, first: Optional[int] = None) -> list:
    """The ``k`` nearest rows of ``features`` to ``query`` (one volume at a time); ``first`` forced to rank 0."""
    dist = []
    for n in range(len(features)):
        d = float(np.linalg.norm(np.asarray(query, np.float64) - np.asarray(features[n], np.float64)))
        dist.append((-1.0 if n == first else d, n))
    dist.sort()
    return [n for _, n in dist[:k]]


def loop_coordinate(volume: np.ndarray, corners: Sequence[Sequence[int]], previous: Sequence[Sequence[int]],
                    crop: Sequence[int], threshold: float, lung_max: float, min_distance: float,
                    len_depth: int = 3, quirk: bool = False) -> Tuple[int, int]:
    """(index of the first accepted trial or -1, trials used), trial by trial like the reference loop."""
    cx, cy, cz = crop
    repeated = False
    for t, (x, y, z) in enumerate(corners):
        if not quirk:
            repeated = False  # the fix: judge each trial on its own
        for p in previous:
            if np.linalg.norm(np.array([x, y, z], float) - np.asarray(p, float)) < min_distance:
                repeated = True
                break
        if repeated:
            continue
        window = volume[x:x + cx, y:y + cy, z:z + cz + len_depth]
        if reference_reject(window, threshold, lung_max, deps=cz, len_depth=len_depth):
            continue
        return t, t + 1
    return -1, len(corners)


def loop_crop(volume: np.ndarray, corner: Sequence[int], crop: Sequence[int]) -> np.ndarray:
    """The crop at ``corner`` (moved inside the volume when it would stick out)."""
    c = [min(max(int(v), 0), s - k) for v, s, k in zip(corner, volume.shape, crop)]
    return np.array(volume[c[0]:c[0] + crop[0], c[1]:c[1] + crop[1], c[2]:c[2] + crop[2]])


def loop_resize_box(volume: np.ndarray, box: Sequence[int], crop: Sequence[int]) -> np.ndarray:
    """One box (x0, y0, z0, sx, sy) cut out and resized to ``crop`` with F.interpolate (trilinear)."""
    x0, y0, z0, sx, sy = (int(v) for v in box)
    patch = torch.from_numpy(np.ascontiguousarray(volume[x0:x0 + sx, y0:y0 + sy, z0:z0 + crop[2]], np.float32))
    out = F.interpolate(patch[None, None], size=tuple(crop), mode="trilinear", align_corners=False)
    return out[0, 0].numpy()
