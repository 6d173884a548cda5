"""A plain, loop-based NumPy CLAHE written from the description of OpenCV's algorithm (the oracle for test_clahe).

One image at a time, one tile at a time, one pixel at a time: no vectorisation, so that it shares no code or
trick with ``genesis_monai.transforms.clahe``. Steps (OpenCV ``createCLAHE(clipLimit, tileGridSize).apply``):
reflect-101 padding to a multiple of the grid when a side is not divisible (then both sides get padded: OpenCV
pads ``tiles - size % tiles``), per-tile histogram, clip at ``max(1, int(clip * area / bins))`` with the excess
spread evenly and the remainder one per bin at a step ``max(bins // remainder, 1)``, LUT
``round(cdf * float32(bins - 1) / area)``, bilinear interpolation between the four nearest tile LUTs in float32.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def _reflect101(p: int, n: int) -> int:
    """OpenCV's borderInterpolate for BORDER_REFLECT_101: reflect (without repeating the edge) until inside."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - p - 2
    return p


def reference_clahe_levels(img: np.ndarray, clip_limit: float = 2.0, tiles_h: int = 8, tiles_w: int = 8,
                           bins: int = 256) -> np.ndarray:
    """``img``: (H, W) integer grey levels in [0, bins - 1]. Returns (H, W) int64 output levels."""
    img = np.asarray(img).astype(np.int64)
    h, w = img.shape
    if h % tiles_h != 0 or w % tiles_w != 0:
        hp, wp = h + tiles_h - h % tiles_h, w + tiles_w - w % tiles_w
    else:
        hp, wp = h, w
    ext = np.zeros((hp, wp), dtype=np.int64)
    for i in range(hp):
        for j in range(wp):
            ext[i, j] = img[_reflect101(i, h), _reflect101(j, w)]
    th, tw = hp // tiles_h, wp // tiles_w
    area = th * tw
    scale = F32(bins - 1) / F32(area)

    luts = np.zeros((tiles_h, tiles_w, bins), dtype=np.int64)
    for ty in range(tiles_h):
        for tx in range(tiles_w):
            hist = [0] * bins
            for i in range(ty * th, (ty + 1) * th):
                for j in range(tx * tw, (tx + 1) * tw):
                    hist[ext[i, j]] += 1
            if clip_limit > 0:
                limit = max(int(clip_limit * area / bins), 1)
                clipped = 0
                for b in range(bins):
                    if hist[b] > limit:
                        clipped += hist[b] - limit
                        hist[b] = limit
                batch = clipped // bins
                residual = clipped - batch * bins
                for b in range(bins):
                    hist[b] += batch
                if residual:
                    step = max(bins // residual, 1)
                    b = 0
                    while b < bins and residual > 0:
                        hist[b] += 1
                        b += step
                        residual -= 1
            total = 0
            for b in range(bins):
                total += hist[b]
                luts[ty, tx, b] = min(max(int(np.rint(F32(total) * scale)), 0), bins - 1)

    out = np.zeros((h, w), dtype=np.int64)
    inv_th, inv_tw = F32(1.0) / F32(th), F32(1.0) / F32(tw)
    for y in range(h):
        tyf = F32(y) * inv_th - F32(0.5)
        ty1 = int(np.floor(tyf))
        ya = F32(tyf - F32(ty1))
        ya1 = F32(1.0) - ya
        ty2 = min(ty1 + 1, tiles_h - 1)
        ty1 = max(ty1, 0)
        for x in range(w):
            txf = F32(x) * inv_tw - F32(0.5)
            tx1 = int(np.floor(txf))
            xa = F32(txf - F32(tx1))
            xa1 = F32(1.0) - xa
            tx2 = min(tx1 + 1, tiles_w - 1)
            tx1 = max(tx1, 0)
            v = img[y, x]
            top = F32(luts[ty1, tx1, v]) * xa1 + F32(luts[ty1, tx2, v]) * xa
            bottom = F32(luts[ty2, tx1, v]) * xa1 + F32(luts[ty2, tx2, v]) * xa
            res = F32(top * ya1 + bottom * ya)
            out[y, x] = min(max(int(np.rint(res)), 0), bins - 1)
    return out


def reference_clahe(image: np.ndarray, clip_limit: float = 2.0, tiles_h: int = 8, tiles_w: int = 8,
                    bins: int = 256) -> np.ndarray:
    """``image``: (H, W) float in [0, 1] -> levels ``rint(x * (bins - 1))`` -> CLAHE -> float32 ``level / (bins - 1)``."""
    levels = np.rint(np.clip(image, 0.0, 1.0) * (bins - 1)).astype(np.int64)
    out = reference_clahe_levels(levels, clip_limit, tiles_h, tiles_w, bins)
    return out.astype(np.float32) / F32(bins - 1)
