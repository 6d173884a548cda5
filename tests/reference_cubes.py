"""Literal per-voxel oracle of the reference cube extraction (METHODS.md §1, upstream_genesis.md §3).

Written from the rule's description, loop for loop, on purpose slow: it is what the vectorised
``genesis_monai.data.cubes`` is checked and benchmarked against. Not part of the package.

Rule: for each voxel (i, j, d) of the first ``deps`` slices of a crop, look at slices d, d+1, ...,
d+len_depth-1 for the first one that is dense (>= threshold); if it is d the voxel scores 1, if it is
d+1 it scores 0.5, otherwise (later or none) 0. Reject the crop when the summed score exceeds
``lung_max * rows * cols * deps``.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def reference_score(crop: np.ndarray, threshold: float, deps: int, len_depth: int = 3) -> float:
    """Summed tissue score of one crop (rows, cols, >= deps + len_depth - 1), per-voxel loops."""
    rows, cols = crop.shape[0], crop.shape[1]
    total = 0.0
    for d in range(deps):
        for i in range(rows):
            for j in range(cols):
                first = None
                for k in range(len_depth):
                    if crop[i, j, d + k] >= threshold:
                        first = k
                        break
                if first == 0:
                    total += 1.0
                elif first == 1:
                    total += 0.5
    return total


def reference_reject(crop: np.ndarray, threshold: float = 0.425, lung_max: float = 0.15, deps: int = 32,
                     len_depth: int = 3) -> bool:
    """True when the reference rule rejects ``crop`` (score > lung_max * rows * cols * deps)."""
    rows, cols = crop.shape[0], crop.shape[1]
    return reference_score(crop, threshold, deps, len_depth) > lung_max * rows * cols * deps


def reference_extract(volume_hu: np.ndarray, corners: Sequence[Sequence[int]], scale: int,
                      crop: Sequence[int] = (64, 64, 32), len_depth: int = 3,
                      hu_window: Tuple[float, float] = (-1000.0, 1000.0), hu_threshold: float = -150.0,
                      lung_max: float = 0.15) -> Tuple[np.ndarray, List[int]]:
    """The reference generator's loop over a given candidate sequence (instead of its own RNG).

    Normalises the whole volume in float64 (clip, scale), then tests candidates one by one with
    :func:`reference_reject` and stops at ``scale`` accepted. Returns the cubes (n, X, Y, Z) float64
    and the indices of the accepted candidates.
    """
    lo, hi = hu_window
    img = np.array(volume_hu, dtype=np.float64)
    img[img < lo] = lo
    img[img > hi] = hi
    img = 1.0 * (img - lo) / (hi - lo)
    thr = (hu_threshold - lo) / (hi - lo)
    rows, cols, deps = crop
    cubes, taken = [], []
    for n, (x, y, z) in enumerate(corners):
        window = img[x:x + rows, y:y + cols, z:z + deps + len_depth]
        if reference_reject(window, thr, lung_max, deps, len_depth):
            continue
        cubes.append(window[:, :, :deps].copy())
        taken.append(n)
        if len(cubes) == scale:
            break
    return np.array(cubes, dtype=np.float64).reshape(-1, rows, cols, deps), taken
