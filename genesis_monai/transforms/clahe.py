"""CLAHE (contrast limited adaptive histogram equalisation) with OpenCV's semantics, batched in torch.

MONAI has no CLAHE. The SMART-Net reference applies ``cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))``
(through albumentations) to each uint8 slice and converts back to float; this module reproduces that
algorithm (OpenCV ``imgproc/src/clahe.cpp``, CPU path) for every slice of a batch at once:

1. grey levels: ``q = round(clip(x, 0, 1) * (bins - 1))`` (round half to even, in the input's float dtype);
   ``bins=256`` is OpenCV's uint8 path, ``bins=65536`` its uint16 path.
2. padding: when the image is not a multiple of the grid, OpenCV pads the bottom by ``tiles_h - H % tiles_h``
   rows and the right by ``tiles_w - W % tiles_w`` columns with BORDER_REFLECT_101. Note its quirk, kept
   here: then a side that *was* divisible still gets one extra tile's worth of rows/columns.
3. one histogram per tile (all tiles of all slices in one ``torch.bincount``), clipped at
   ``limit = max(1, int(clip_limit * tile_area / bins))`` (no clipping when ``clip_limit <= 0``); the clipped
   excess is spread evenly (``excess // bins`` to every bin), the remainder ``r`` adds one to the bins
   ``0, s, 2s, ...`` (``r`` of them) with the step ``s = max(bins // r, 1)``.
4. LUT per tile: ``round(cumsum(hist) * float32((bins - 1) / tile_area))``.
5. each pixel of the original (unpadded) image: bilinear interpolation of the LUTs of the four nearest tile
   centres (``t = pos / tile_size - 0.5``, clamped at the border tiles), in float32 as OpenCV does, rounded.
6. output ``level / (bins - 1)`` as float32 in [0, 1].

The float32 arithmetic follows OpenCV's order of operations, so the result matches it level for level up to
compiler differences in the last float bit (at most one grey level, 1/255, and rarely).

``tile_grid`` is given in array-axis order ``(tiles along H, tiles along W)``, MONAI's way; OpenCV's
``tileGridSize`` is ``(width, height)``, so OpenCV ``(a, b)`` is ``tile_grid=(b, a)`` here (the same for the
default (8, 8)).
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Sequence, Tuple

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

__all__ = ["CLAHE", "CLAHEd", "clahe", "clahe_levels"]

_MAX_BINS = 65536


def _check_params(clip_limit: float, tile_grid: Sequence[int], bins: int) -> Tuple[float, Tuple[int, int], int]:
    grid = tuple(int(t) for t in tile_grid)
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"CLAHE: tile_grid must be two positive ints (tiles along H, tiles along W), got {tile_grid!r}")
    if not 2 <= int(bins) <= _MAX_BINS:
        raise ValueError(f"CLAHE: bins must be in [2, {_MAX_BINS}] (256 = OpenCV's uint8 CLAHE), got {bins!r}")
    return float(clip_limit), grid, int(bins)  # type: ignore[return-value]


def _reflect101_index(size: int, total: int, device: torch.device) -> torch.Tensor:
    """Source indices 0..size-1 for positions 0..total-1 under BORDER_REFLECT_101 (``dcb|abcd|cba``), repeated
    reflection for pads longer than the image (OpenCV's borderInterpolate)."""
    pos = torch.arange(total, device=device)
    if size == 1:
        return torch.zeros_like(pos)
    period = 2 * (size - 1)
    pos = pos % period
    return torch.where(pos >= size, period - pos, pos)


def _interpolation_weights(size: int, tile: int, n_tiles: int, device: torch.device):
    """Per position along one axis: the two neighbouring tile indices and their weights (float32, OpenCV's
    arithmetic: ``t = pos * (1/tile) - 0.5``, lower tile ``floor(t)`` clamped to >= 0, upper clamped to the last)."""
    inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(tile), dtype=torch.float32)
    t = torch.arange(size, device=device, dtype=torch.float32) * inv.to(device) - 0.5
    low = torch.floor(t)
    w_high = t - low
    w_low = 1.0 - w_high
    low_i = low.long()
    return low_i.clamp(min=0), (low_i + 1).clamp(max=n_tiles - 1), w_low, w_high


def clahe_levels(levels: torch.Tensor, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8),
                 bins: int = 256) -> torch.Tensor:
    """CLAHE on integer grey levels, OpenCV's algorithm (module docstring, steps 2-5).

    Args:
        levels: (N, H, W) integer tensor with values in [0, bins - 1], any device; N independent images.
        clip_limit: OpenCV's ``clipLimit`` (contrast limit per tile, in multiples of a flat histogram's bin
            height); ``<= 0`` disables clipping (plain adaptive histogram equalisation).
        tile_grid: (tiles along H, tiles along W).
        bins: number of grey levels (256: uint8).

    Returns:
        (N, H, W) int64 output grey levels in [0, bins - 1], on the input's device.
    """
    clip_limit, (tiles_h, tiles_w), bins = _check_params(clip_limit, tile_grid, bins)
    if levels.ndim != 3 or levels.is_floating_point() or levels.dtype == torch.bool:
        raise ValueError(f"clahe_levels: expected an (N, H, W) integer tensor, got {levels.dtype} {tuple(levels.shape)}")
    n, h, w = levels.shape
    device = levels.device
    q = levels.long()
    if n == 0 or h == 0 or w == 0:
        return q.clone()

    # OpenCV pads only when a side is not divisible, and then pads both sides (module docstring, step 2)
    if h % tiles_h or w % tiles_w:
        hp, wp = h + tiles_h - h % tiles_h, w + tiles_w - w % tiles_w
        padded = q.index_select(1, _reflect101_index(h, hp, device)).index_select(2, _reflect101_index(w, wp, device))
    else:
        hp, wp, padded = h, w, q
    tile_h, tile_w = hp // tiles_h, wp // tiles_w
    area = tile_h * tile_w
    n_tiles = tiles_h * tiles_w

    # every padded pixel votes into bin (image, tile row, tile col, level): one bincount for the whole batch
    tile_row = torch.arange(hp, device=device) // tile_h
    tile_col = torch.arange(wp, device=device) // tile_w
    tile_of = (tile_row[:, None] * tiles_w + tile_col[None, :])  # (Hp, Wp)
    image_base = torch.arange(n, device=device).view(n, 1, 1) * n_tiles
    flat = ((image_base + tile_of) * bins + padded).reshape(-1)
    hist = torch.bincount(flat, minlength=n * n_tiles * bins).view(n * n_tiles, bins)

    if clip_limit > 0.0:
        # C++: static_cast<int>(double clipLimit * int area / int bins), at least 1
        limit = max(int(clip_limit * area / bins), 1)
        excess = (hist - limit).clamp(min=0).sum(dim=1, keepdim=True)  # (T, 1)
        hist = hist.clamp(max=limit) + excess // bins
        residual = excess % bins
        step = (bins // residual.clamp(min=1)).clamp(min=1)
        pos = torch.arange(bins, device=device).view(1, bins)
        # bins 0, step, 2*step, ... get one each, `residual` of them (all < bins since step = bins // residual)
        hist = hist + ((pos % step == 0) & (pos // step < residual)).long()

    scale = (torch.tensor(float(bins - 1), dtype=torch.float32) / torch.tensor(float(area), dtype=torch.float32))
    lut = torch.round(hist.cumsum(dim=1).to(torch.float32) * scale.to(device)).clamp_(0, bins - 1)
    lut = lut.reshape(-1)  # flat (N * tiles_h * tiles_w * bins), float32 integer values

    # bilinear interpolation between the four neighbouring tiles' LUTs, over the original pixels only
    r1, r2, wr1, wr2 = _interpolation_weights(h, tile_h, tiles_h, device)
    c1, c2, wc1, wc2 = _interpolation_weights(w, tile_w, tiles_w, device)
    base = image_base * bins + q  # (N, H, W): image offset + grey level
    row1, row2 = (r1 * tiles_w * bins).view(h, 1), (r2 * tiles_w * bins).view(h, 1)
    col1, col2 = (c1 * bins).view(1, w), (c2 * bins).view(1, w)
    wc1, wc2 = wc1.view(1, 1, w), wc2.view(1, 1, w)
    # tile offsets are per (row, column) only: (H, W) small tensors, one full-size add per neighbour
    top = lut[base + (row1 + col1)] * wc1 + lut[base + (row1 + col2)] * wc2
    bottom = lut[base + (row2 + col1)] * wc1 + lut[base + (row2 + col2)] * wc2
    res = top * wr1.view(1, h, 1) + bottom * wr2.view(1, h, 1)
    return torch.round(res).clamp_(0, bins - 1).long()


def clahe(images: torch.Tensor, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8),
          bins: int = 256) -> torch.Tensor:
    """CLAHE of float images in [0, 1], each 2-D image ``(..., H, W)`` on its own (module docstring).

    Values outside [0, 1] are clipped and NaN counts as 0 (check first where that matters, as
    :class:`CLAHE` does). Returns float32 (..., H, W) in [0, 1] (multiples of ``1 / (bins - 1)``) on the
    input's device.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"clahe: expected a floating-point torch.Tensor in [0, 1], got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim < 2:
        raise ValueError(f"clahe: expected images (..., H, W), got shape {tuple(images.shape)}")
    _, _, bins = _check_params(clip_limit, tile_grid, bins)
    shape = images.shape
    x = torch.nan_to_num(images, nan=0.0).clamp(0.0, 1.0)
    levels = torch.round(x * (bins - 1)).long().reshape(-1, shape[-2], shape[-1])
    out = clahe_levels(levels, clip_limit, tile_grid, bins)
    return (out.to(torch.float32) / float(bins - 1)).reshape(shape)


class CLAHE(Transform):
    """CLAHE of a channel-first slice (C, H, W) or volume (C, H, W, D) with values in [0, 1].

    A volume is equalised slice by slice along its last axis (each axial slice on its own, as the SMART-Net
    reference does), all slices and channels in one batched call. Returns float32 of the input's kind (numpy,
    torch, MetaTensor with its meta) and shape, in [0, 1], on the input's device.

    Args:
        clip_limit: OpenCV ``clipLimit`` (2.0 in SMART-Net); ``<= 0`` disables clipping.
        tile_grid: (tiles along H, tiles along W); (8, 8) in SMART-Net.
        bins: grey levels of the quantisation, 256 = OpenCV on uint8.
        check_range: raise ValueError unless every value lies in [0, 1] (NaN fails too); with False, values
            are clipped to [0, 1] silently.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8), bins: int = 256,
                 check_range: bool = True):
        self.clip_limit, self.tile_grid, self.bins = _check_params(clip_limit, tile_grid, bins)
        self.check_range = bool(check_range)

    def _apply(self, img: NdarrayOrTensor, name: str) -> NdarrayOrTensor:
        x = torch.as_tensor(img)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected floating-point intensities in [0, 1], got {x.dtype}; "
                            f"scale the image first, e.g. monai.transforms.ScaleIntensityRange")
        if x.ndim not in (3, 4):
            raise ValueError(f"{name}: expected a channel-first slice (C, H, W) or volume (C, H, W, D), got shape "
                             f"{tuple(x.shape)}; add the channel dimension first (monai.transforms.EnsureChannelFirst)")
        self._check_range(x, name)
        if x.ndim == 3:  # (C, H, W)
            out = clahe(x, self.clip_limit, self.tile_grid, self.bins)
        else:  # (C, H, W, D): slices along the last axis, batched as (C, D, H, W)
            out = clahe(x.movedim(-1, 1), self.clip_limit, self.tile_grid, self.bins).movedim(1, -1).contiguous()
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]

    def _check_range(self, x: torch.Tensor, name: str) -> None:
        if self.check_range and x.numel():
            lo, hi = torch.aminmax(x)  # propagates NaN, so NaN fails as well
            lo, hi = float(lo), float(hi)
            if not (lo >= 0.0 and hi <= 1.0):
                raise ValueError(f"{name}: expected values in [0, 1], found min {lo:g}, max {hi:g}; window and scale "
                                 f"first, e.g. head CT: monai.transforms.ScaleIntensityRange(a_min=0, a_max=80, "
                                 f"b_min=0, b_max=1, clip=True), or pass check_range=False to clip silently")

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img``: (C, H, W) or (C, H, W, D) floats in [0, 1]. Returns the equalised float32 image."""
        return self._apply(img, type(self).__name__)


class CLAHEd(MapTransform):
    """Dictionary :class:`CLAHE`: equalises ``data[key]`` for each key (images only, never a label)."""

    backend = CLAHE.backend

    def __init__(self, keys: KeysCollection, clip_limit: float = 2.0, tile_grid: Sequence[int] = (8, 8),
                 bins: int = 256, check_range: bool = True, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.transform = CLAHE(clip_limit, tile_grid, bins, check_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform._apply(d[key], f"{type(self).__name__} key {key!r}")
        return d
