"""The baseline of ``benchmark cubes``: the reference generator's per-cube rejection loop, written plainly.

This follows the structure of the Models Genesis cube generator (``infinite_generator_3D.py``,
research/upstream_genesis.md §3; METHODS.md §1): normalise the whole volume in float64, then for
each candidate crop build the per-voxel depth map ``d_img`` with four nested Python loops (slice,
row, column, look-ahead), turn it into a score ``1 - k / (len_depth - 1)`` and reject the crop when
the score sum exceeds ``lung_max`` of the cube volume. Only the candidate corners are given from
outside (instead of Python's ``random`` seeded with 1), so the benchmark can feed both this loop
and the vectorised extractor the same candidates and compare the cubes.

Written for the benchmark (it is the speed baseline, on purpose slow); the tests check the
vectorised rule against their own oracle in ``tests/reference_cubes.py``.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["reference_loop_extract"]


def _rejected(crop_window: np.ndarray, deps: int, len_depth: int, threshold: float, lung_max: float) -> bool:
    """The reference test of one crop (rows, cols, deps + len_depth), values normalised to [0, 1]."""
    rows, cols = crop_window.shape[0], crop_window.shape[1]
    d_img = np.zeros((rows, cols, deps), dtype=float)
    for d in range(deps):
        for i in range(rows):
            for j in range(cols):
                for k in range(len_depth):
                    if crop_window[i, j, d + k] >= threshold:
                        d_img[i, j, d] = k
                        break
                    if k == len_depth - 1:
                        d_img[i, j, d] = k
    d_img = d_img.astype("float32")
    d_img /= len_depth - 1
    d_img = 1.0 - d_img
    return float(np.sum(d_img)) > lung_max * rows * cols * deps


def reference_loop_extract(
    volume_hu: np.ndarray,
    corners: Sequence[Sequence[int]],
    scale: int,
    crop: Sequence[int] = (64, 64, 32),
    len_depth: int = 3,
    hu_window: Tuple[float, float] = (-1000.0, 1000.0),
    hu_threshold: float = -150.0,
    lung_max: float = 0.15,
) -> Tuple[np.ndarray, List[int]]:
    """Cubes (n, X, Y, Z) float64 in [0, 1] and the indices of the accepted ``corners``, the reference way.

    Args:
        volume_hu: (X, Y, Z) CT volume in HU.
        corners: candidate corners (x, y, z), tested in order until ``scale`` are accepted.
        scale: cubes wanted.
        crop: cube size; a candidate reads ``len_depth`` more slices.
        len_depth: look-ahead slices (3, so only the next slice scores 0.5).
        hu_window: window clipped and mapped to [0, 1].
        hu_threshold: dense threshold in HU (-150, 0.425 after scaling).
        lung_max: reject when the score sum > lung_max * cube volume.
    """
    hu_min, hu_max = hu_window
    img_array = np.array(volume_hu, dtype=np.float64)
    img_array[img_array < hu_min] = hu_min
    img_array[img_array > hu_max] = hu_max
    img_array = 1.0 * (img_array - hu_min) / (hu_max - hu_min)
    threshold = (hu_threshold - hu_min) / (hu_max - hu_min)
    rows, cols, deps = (int(c) for c in crop)
    slice_set = np.zeros((int(scale), rows, cols, deps), dtype=float)
    taken: List[int] = []
    for n, (x, y, z) in enumerate(corners):
        crop_window = img_array[x:x + rows, y:y + cols, z:z + deps + len_depth]
        if _rejected(crop_window, deps, len_depth, threshold, lung_max):
            continue
        slice_set[len(taken)] = crop_window[:, :, :deps]
        taken.append(n)
        if len(taken) == scale:
            break
    return slice_set[: len(taken)], taken
