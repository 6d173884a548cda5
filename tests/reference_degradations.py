"""Plain per-sample NumPy degradations written straight from METHODS.md §1 ("Degradations").

This is the test oracle for ``genesis_monai.transforms``: slow, loop-based and obvious on purpose,
so that the vectorised torch kernels can be checked against it statistically. It is written from
the prose description (not from any upstream code). A sample is a float array (C, X, Y, Z) or
(C, X, Y) with values in [0, 1]; every function returns a new array and leaves its input alone.
``rng`` is a ``numpy.random.Generator``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[Tuple[int, ...], Tuple[int, ...]]  # (corner per axis, size per axis)


def flip(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, prob: float = 0.4
         ) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Up to three flips, each while a coin with ``prob`` succeeds, along an axis drawn from the
    first three axes of the sample (channel, X, Y: the reference quirk). Returns the flipped pair
    and the list of axes used."""
    x, y = x.copy(), y.copy()
    axes = []
    for _ in range(3):
        if rng.random() >= prob:
            break
        axis = int(rng.integers(0, 3))
        axes.append(axis)
        x, y = np.flip(x, axis).copy(), np.flip(y, axis).copy()
    return x, y, axes


def local_pixel_shuffle(x: np.ndarray, rng: np.random.Generator, n_blocks: int = 10_000) -> np.ndarray:
    """``n_blocks`` blocks, size per axis uniform in [1, D//10], corner uniform inside the sample;
    each block's voxels are read from the ORIGINAL sample, permuted and written to the output,
    later blocks overwriting earlier ones. The same permutation moves all channels."""
    out = x.copy()
    spatial = x.shape[1:]
    for _ in range(n_blocks):
        size = [int(rng.integers(1, max(1, d // 10) + 1)) for d in spatial]
        corner = [int(rng.integers(0, d - s + 1)) for d, s in zip(spatial, size)]
        window = (slice(None),) + tuple(slice(c, c + s) for c, s in zip(corner, size))
        block = x[window].reshape(x.shape[0], -1)
        perm = rng.permutation(block.shape[1])
        out[window] = block[:, perm].reshape(out[window].shape)
    return out


def bezier_curve(points: Sequence[float], n_points: int = 100_000) -> Tuple[np.ndarray, np.ndarray]:
    """Samples of the cubic Bezier curve with control points (0,0), (a,b), (c,d), (1,1), where
    ``points = (a, b, c, d)``. Bernstein weight of point i is C(3,i) t^(3-i) (1-t)^i, so the curve
    runs from (1,1) at t=0 to (0,0) at t=1."""
    a, b, c, d = points
    px = np.array([0.0, a, c, 1.0])
    py = np.array([0.0, b, d, 1.0])
    t = np.linspace(0.0, 1.0, n_points)
    weights = np.stack([1.0 * t ** 3, 3.0 * t ** 2 * (1 - t), 3.0 * t * (1 - t) ** 2, 1.0 * (1 - t) ** 3])
    return px @ weights, py @ weights


def bezier_map(x: np.ndarray, points: Sequence[float], invert: bool, n_points: int = 100_000) -> np.ndarray:
    """Map intensities through the Bezier curve: x-samples sorted; y-samples sorted too unless
    ``invert`` (then f(0)=1, f(1)=0). Piecewise-linear interpolation, clamped at the ends."""
    xs, ys = bezier_curve(points, n_points)
    xs = np.sort(xs)
    if not invert:
        ys = np.sort(ys)
    return np.interp(x, xs, ys).astype(x.dtype)


def random_bezier(x: np.ndarray, rng: np.random.Generator, n_points: int = 100_000
                  ) -> Tuple[np.ndarray, Tuple[float, ...], bool]:
    points = tuple(float(v) for v in rng.random(4))
    invert = bool(rng.random() < 0.5)
    return bezier_map(x, points, invert, n_points), points, invert


def count_boxes(rng: np.random.Generator, first: int, most: int, continue_prob: float = 0.95) -> int:
    """``first`` boxes for sure, then more while a coin with ``continue_prob`` succeeds, at most ``most``."""
    n = first
    while n < most and rng.random() < continue_prob:
        n += 1
    return n


def inpaint_box(spatial: Sequence[int], rng: np.random.Generator) -> Box:
    size = tuple(int(rng.integers(d // 6, d // 3 + 1)) for d in spatial)
    corner = tuple(int(rng.integers(3, d - s - 3 + 1)) for d, s in zip(spatial, size))
    return corner, size


def outpaint_box(spatial: Sequence[int], rng: np.random.Generator) -> Box:
    size = tuple(d - int(rng.integers(3 * d // 7, 4 * d // 7 + 1)) for d in spatial)
    corner = tuple(int(rng.integers(3, d - s - 3 + 1)) for d, s in zip(spatial, size))
    return corner, size


def _window(box: Box):
    corner, size = box
    return (slice(None),) + tuple(slice(c, c + s) for c, s in zip(corner, size))


def in_paint(x: np.ndarray, rng: np.random.Generator, min_boxes: int = 0, max_boxes: int = 5,
             continue_prob: float = 0.95) -> Tuple[np.ndarray, List[Box]]:
    """Fill each box with independent U[0,1) noise per voxel (shared across channels)."""
    out = x.copy()
    boxes = []
    for _ in range(count_boxes(rng, min_boxes, max_boxes, continue_prob)):
        box = inpaint_box(x.shape[1:], rng)
        boxes.append(box)
        window = _window(box)
        noise = rng.random(out[window].shape[1:])
        out[window] = noise[None]
    return out, boxes


def out_paint(x: np.ndarray, rng: np.random.Generator, min_boxes: int = 1, max_boxes: int = 5,
              continue_prob: float = 0.95) -> Tuple[np.ndarray, List[Box]]:
    """Replace everything by U[0,1) noise, then copy the original back inside each box."""
    out = np.broadcast_to(rng.random(x.shape[1:])[None], x.shape).astype(x.dtype)
    boxes = []
    for _ in range(count_boxes(rng, min_boxes, max_boxes, continue_prob)):
        box = outpaint_box(x.shape[1:], rng)
        boxes.append(box)
        window = _window(box)
        out[window] = x[window]
    return out, boxes


def models_genesis_pair(x: np.ndarray, rng: np.random.Generator, flip_rate: float = 0.4,
                        local_rate: float = 0.5, nonlinear_rate: float = 0.9, paint_rate: float = 0.9,
                        inpaint_rate: float = 0.2, n_blocks: int = 10_000,
                        n_points: int = 100_000) -> Tuple[np.ndarray, np.ndarray]:
    """The whole Models Genesis recipe for one sample: (degraded, target)."""
    y = x.copy()
    x, y, _ = flip(x, y, rng, flip_rate)
    if rng.random() < local_rate:
        x = local_pixel_shuffle(x, rng, n_blocks)
    if rng.random() < nonlinear_rate:
        x, _, _ = random_bezier(x, rng, n_points)
    if rng.random() < paint_rate:
        if rng.random() < inpaint_rate:
            x, _ = in_paint(x, rng)
        else:
            x, _ = out_paint(x, rng)
    return x, y


def box_mask(spatial: Sequence[int], boxes: Sequence[Box]) -> np.ndarray:
    """Union of boxes as a boolean array of shape ``spatial``."""
    mask = np.zeros(tuple(spatial), dtype=bool)
    for box in boxes:
        mask[_window(box)[1:]] = True
    return mask


def reference_batch(x: np.ndarray, seed: Optional[int] = 0, **kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """Apply :func:`models_genesis_pair` to every sample of a batch (N, C, ...)."""
    rng = np.random.default_rng(seed)
    pairs = [models_genesis_pair(sample, rng, **kwargs) for sample in x]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def permutation_rows(n_rows: int, length: int, permuted_values: Callable) -> "torch.Tensor":
    """(n_rows, length) permutations of range(length) from the package's value permuter
    (``genesis_monai.transforms.shuffle._permuted_values``), for tests of its uniformity; the
    package itself only ever permutes block offsets."""
    import torch

    return permuted_values(n_rows, torch.arange(length), None, torch.device("cpu"))
