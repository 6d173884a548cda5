"""A plain SciPy elastic deformation in the reference's way (luna_loader), with the noise given, for oracle tests."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates


def reference_elastic(image: np.ndarray, noise0: np.ndarray, noise1: np.ndarray, sigma: float = 8.0,
                      alpha: float = 991.0) -> np.ndarray:
    """``image`` (X, Y, Z); noise fields (X, Y, Z) in [-1, 1): field 0 moves axis 0, field 1 axis 1, none axis 2."""
    d0 = gaussian_filter(noise0, sigma, mode="constant", cval=0) * alpha
    d1 = gaussian_filter(noise1, sigma, mode="constant", cval=0) * alpha
    i0, i1, i2 = np.meshgrid(*(np.arange(s) for s in image.shape), indexing="ij")
    coords = np.stack([i0 + d0, i1 + d1, i2]).reshape(3, -1)
    return map_coordinates(image, coords, order=1, mode="reflect").reshape(image.shape)
