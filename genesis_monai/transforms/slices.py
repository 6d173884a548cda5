"""SMART-Net slice preparation: crop empty end slices, sample one axial slice (a lesion slice when there is one).

The SMART-Net reference (2022) prepares each head-CT volume (C, H, W, D) by windowing [0, 80] HU -> [0, 1],
dropping the all-zero slices at both ends of the depth axis, and taking one axial slice per volume with a
"crop by foreground" of patch (H, W, 1): a random foreground voxel's slice when the mask has any, otherwise a
uniformly random slice. These transforms do the same in MONAI's idiom:

- :class:`CropEmptyEndSlices` / :class:`CropEmptyEndSlicesd`: the crop (one range for all keys).
- :class:`RandLesionSlice` / :class:`RandLesionSliced`: the slice sampler; the dictionary version also stores
  the slice index and the slice's classification target ("has_lesion").

MetaTensors are cropped with MONAI's ``SpatialCrop`` (affine updated, operation recorded) and slices squeezed
with ``SqueezeDim``; numpy arrays and plain tensors are indexed and stay what they are.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SqueezeDim, Transform
from monai.utils import TransformBackends

__all__ = [
    "CropEmptyEndSlices",
    "CropEmptyEndSlicesd",
    "RandLesionSlice",
    "RandLesionSliced",
    "nonempty_slice_range",
    "lesion_voxels_per_slice",
    "sample_slice_indices",
    "take_slice",
]


def _plain(img: NdarrayOrTensor) -> torch.Tensor:
    t = torch.as_tensor(img)
    return t.as_tensor() if isinstance(t, MetaTensor) else t


def _source_text(img: Any) -> str:
    """`` (file ...)`` from a MetaTensor's ``filename_or_obj``, else empty: for error messages."""
    meta = getattr(img, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return f" (file {meta['filename_or_obj']})"
    return ""


def _axis_index(ndim: int, axis: int, name: str) -> int:
    """Array axis of a channel-first image as a non-negative index; the channel axis (0) is not a depth axis."""
    if ndim < 2:
        raise ValueError(f"{name}: expected a channel-first image (C, *spatial), got {ndim} dimension(s)")
    if not -ndim <= axis < ndim or axis % ndim == 0:
        raise ValueError(f"{name}: axis must be a spatial axis of a channel-first image with {ndim} dimensions "
                         f"(1..{ndim - 1} or -{ndim - 1}..-1), got {axis}")
    return axis % ndim


def nonempty_slice_range(img: NdarrayOrTensor, axis: int = -1, background: float = 0.0) -> Optional[Tuple[int, int]]:
    """``(start, stop)`` of the slices along ``axis`` between the first and the last slice that has any value
    above ``background`` (over all channels); ``None`` when every slice is empty. Slices inside the range are
    kept even when empty: only the ends are trimmed."""
    x = _plain(img)
    ax = _axis_index(x.ndim, axis, "nonempty_slice_range")
    occupied = (x > background).movedim(ax, 0).reshape(x.shape[ax], -1).any(dim=1)
    idx = torch.nonzero(occupied).flatten()
    if idx.numel() == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


def _crop_axis(img: NdarrayOrTensor, ax: int, start: int, stop: int) -> NdarrayOrTensor:
    if isinstance(img, MetaTensor):
        roi_start = [0] * (img.ndim - 1)
        roi_end = list(img.shape[1:])
        roi_start[ax - 1], roi_end[ax - 1] = start, stop
        return SpatialCrop(roi_start=roi_start, roi_end=roi_end)(img)
    index = [slice(None)] * img.ndim
    index[ax] = slice(start, stop)
    return img[tuple(index)]


class CropEmptyEndSlices(Transform):
    """Drop the empty slices at both ends of one axis of a channel-first image (C, H, W, D).

    A slice is empty when all its values (every channel) are ``<= background``: with the SMART-Net window
    (ScaleIntensityRange 0..80 HU -> 0..1, clipped) that is a slice with no voxel above 0 HU, i.e. the
    reference's all-zero slices. Empty slices between non-empty ones stay.

    Args:
        axis: array axis of the depth (default -1, the last; axis 0 is the channel and not allowed).
        background: the value at or below which a voxel counts as empty.

    Raises ValueError (naming the file from MetaTensor meta ``filename_or_obj`` when there is one) when every
    slice is empty.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, axis: int = -1, background: float = 0.0):
        self.axis, self.background = int(axis), float(background)

    def compute_range(self, img: NdarrayOrTensor, name: Optional[str] = None) -> Tuple[int, int]:
        """``(start, stop)`` of the kept slices; raises ValueError when none is left."""
        name = name or type(self).__name__
        _axis_index(len(img.shape), self.axis, name)
        bounds = nonempty_slice_range(img, self.axis, self.background)
        if bounds is None:
            raise ValueError(f"{name}{_source_text(img)}: every slice along axis {self.axis} is empty (all values "
                             f"<= {self.background:g}), nothing would be left; check the intensity window and the "
                             f"file (shape {tuple(img.shape)})")
        return bounds

    def crop(self, img: NdarrayOrTensor, start: int, stop: int, name: Optional[str] = None) -> NdarrayOrTensor:
        """``img`` restricted to slices ``start:stop`` along ``axis``."""
        ax = _axis_index(len(img.shape), self.axis, name or type(self).__name__)
        return _crop_axis(img, ax, start, stop)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img``: (C, *spatial). Returns it without the empty end slices (same kind; MetaTensor affine updated)."""
        start, stop = self.compute_range(img)
        return self.crop(img, start, stop)


class CropEmptyEndSlicesd(MapTransform):
    """Dictionary :class:`CropEmptyEndSlices`: the range comes from ``data[source_key]`` (the image), the same
    crop goes to every key (image and label), so they stay aligned.

    Raises KeyError when ``source_key`` is missing, ValueError (naming the key and the file) when every slice
    of the source is empty or when a key's size along ``axis`` differs from the source's.
    """

    backend = CropEmptyEndSlices.backend

    def __init__(self, keys: KeysCollection, source_key: str = "image", axis: int = -1, background: float = 0.0,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.cropper = CropEmptyEndSlices(axis, background)

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        name = type(self).__name__
        if self.source_key not in d:
            raise KeyError(f"{name}: source_key {self.source_key!r} is not in the data (keys: {sorted(map(str, d))})")
        source = d[self.source_key]
        start, stop = self.cropper.compute_range(source, f"{name} key {self.source_key!r}")
        ax = _axis_index(len(source.shape), self.cropper.axis, name)
        for key in self.key_iterator(d):
            img = d[key]
            if len(img.shape) != len(source.shape) or img.shape[ax] != source.shape[ax]:
                raise ValueError(f"{name} key {key!r}{_source_text(img)}: shape {tuple(img.shape)} does not match "
                                 f"the source key {self.source_key!r} {tuple(source.shape)} along axis "
                                 f"{self.cropper.axis}")
            d[key] = _crop_axis(img, ax, start, stop)
        return d


def lesion_voxels_per_slice(label: NdarrayOrTensor) -> np.ndarray:
    """Foreground voxels (value > 0 in any channel) per slice along the last axis of ``label`` (C, ..., D).
    Returns (D,) int64 numpy counts (the reduction runs on the label's device)."""
    x = _plain(label)
    fg = (x > 0).reshape(x.shape[0], -1, x.shape[-1]).any(dim=0)
    return fg.sum(dim=0).cpu().numpy().astype(np.int64)


def sample_slice_indices(counts: Optional[np.ndarray], depth: int, num_samples: int,
                         rng: np.random.RandomState) -> np.ndarray:
    """``num_samples`` slice indices (with replacement, int64): with foreground (``counts.sum() > 0``) the slice
    of a uniformly random foreground voxel - the r-th voxel in slice order for a uniform integer r, so a slice
    is drawn with probability ``counts[k] / counts.sum()`` exactly and an empty slice never -; else uniform
    over ``depth`` slices."""
    total = int(counts.sum()) if counts is not None else 0
    if total > 0:
        r = rng.randint(0, total, size=num_samples, dtype=np.int64)
        return np.searchsorted(np.cumsum(counts), r, side="right").astype(np.int64)
    return rng.randint(0, depth, size=num_samples, dtype=np.int64)


def take_slice(img: NdarrayOrTensor, index: int) -> NdarrayOrTensor:
    """Slice ``index`` of the last axis of ``img`` (C, H, W, D) as a new (C, H, W) array of the same kind
    (a copy, so later in-place transforms cannot touch the volume). MetaTensor: ``SpatialCrop`` then
    ``SqueezeDim`` (affine reduced to 2-D, the crop recorded)."""
    if isinstance(img, MetaTensor):
        roi_start = [0] * (img.ndim - 1)
        roi_end = list(img.shape[1:])
        roi_start[-1], roi_end[-1] = index, index + 1
        return SqueezeDim(dim=img.ndim - 1)(SpatialCrop(roi_start=roi_start, roi_end=roi_end)(img)).clone()
    out = img[..., index]
    return out.copy() if isinstance(out, np.ndarray) else out.clone()


def _check_volume(img: Any, name: str, depth: Optional[int] = None) -> int:
    shape = tuple(getattr(img, "shape", ()))
    if len(shape) != 4:
        raise ValueError(f"{name}{_source_text(img)}: expected a channel-first volume (C, H, W, D), got shape {shape}")
    if depth is not None and shape[-1] != depth:
        raise ValueError(f"{name}{_source_text(img)}: depth {shape[-1]} (shape {shape}) differs from the label's "
                         f"depth {depth}; the image and label must have the same slices")
    if shape[-1] == 0:
        raise ValueError(f"{name}{_source_text(img)}: the volume has no slice (shape {shape})")
    return shape[-1]


def _draw(label: Optional[NdarrayOrTensor], depth: Optional[int], num_samples: int, rng: np.random.RandomState,
          name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Slice indices and, per index, whether the label's slice has foreground (False without a label)."""
    counts = lesion_voxels_per_slice(label) if label is not None else None
    depth = int(label.shape[-1]) if label is not None else depth
    if depth is None or depth < 1:
        raise ValueError(f"{name}.randomize: give a label or a depth >= 1, got depth={depth!r}")
    indices = sample_slice_indices(counts, depth, num_samples, rng)
    has_lesion = counts[indices] > 0 if counts is not None else np.zeros(num_samples, dtype=bool)
    return indices, has_lesion


class RandLesionSlice(Randomizable, Transform):
    """One axial slice (last axis) of a volume (C, H, W, D) -> (C, H, W): a lesion slice when there is one.

    With a label that has any foreground voxel the slice is that of a uniformly random foreground voxel
    (slices with more lesion are more likely; an empty slice is never drawn), else a uniformly random slice.
    ``num_samples > 1`` draws that many slices independently (with replacement) and returns a list.

    ``randomize(label, depth)`` draws ``self.slice_indices``; ``__call__(img, label=None, randomize=True)``
    returns ``img``'s slice (num_samples == 1) or the list of slices. Call it with ``randomize=False`` to cut
    the same slices from another array (e.g. the label itself).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_samples: int = 1):
        if int(num_samples) < 1:
            raise ValueError(f"{type(self).__name__}: num_samples must be >= 1, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.slice_indices = np.zeros(0, dtype=np.int64)
        self.slice_has_lesion = np.zeros(0, dtype=bool)

    def randomize(self, label: Optional[NdarrayOrTensor] = None, depth: Optional[int] = None) -> None:
        """Draw the slice indices from ``label`` (C, H, W, D), or uniformly over ``depth`` slices without one."""
        self.slice_indices, self.slice_has_lesion = _draw(label, depth, self.num_samples, self.R, type(self).__name__)

    def __call__(self, img: NdarrayOrTensor, label: Optional[NdarrayOrTensor] = None,
                 randomize: bool = True) -> Union[NdarrayOrTensor, List[NdarrayOrTensor]]:
        """``img``, ``label``: (C, H, W, D) with the same D. Returns (C, H, W) (or a list of ``num_samples``)."""
        name = type(self).__name__
        depth = _check_volume(label, f"{name} label") if label is not None else None
        depth = _check_volume(img, name, depth)
        if randomize:
            self.randomize(label, depth)
        elif len(self.slice_indices) == 0 or int(self.slice_indices.max()) >= depth:
            raise ValueError(f"{name}: randomize=False needs slice indices drawn for a volume of this depth "
                             f"({depth}); call randomize() first")
        slices = [take_slice(img, int(k)) for k in self.slice_indices]
        return slices[0] if self.num_samples == 1 else slices


class RandLesionSliced(Randomizable, MapTransform):
    """Dictionary :class:`RandLesionSlice`: the same slice for every key (and for ``label_key``, sliced too).

    Each output dict is a shallow copy of the input with ``keys`` (and the label) replaced by their (C, H, W)
    slice, plus ``slice_index_key`` (int, the slice's index along D) and ``has_lesion_key`` (float32 tensor of
    shape (1,), 1.0 when the slice's label has any foreground voxel: the SMART-Net classification target,
    shaped like a (B, 1) logit once batched). ``label_key=None`` samples uniformly and sets has_lesion 0.
    ``num_samples == 1`` returns a dict, ``num_samples > 1`` a list of dicts (like ``RandCropByPosNegLabeld``),
    which ``monai.transforms.Compose`` and the data loaders flatten into samples.

    Raises KeyError when the label key is missing, ValueError (naming the key and the file) for a volume that
    is not (C, H, W, D) or whose depth differs from the label's.
    """

    backend = RandLesionSlice.backend

    def __init__(self, keys: KeysCollection, label_key: Optional[str] = "label", num_samples: int = 1,
                 slice_index_key: str = "slice_index", has_lesion_key: str = "has_lesion",
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_key = label_key
        self.slice_index_key, self.has_lesion_key = slice_index_key, has_lesion_key
        if int(num_samples) < 1:
            raise ValueError(f"{type(self).__name__}: num_samples must be >= 1, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.slice_indices = np.zeros(0, dtype=np.int64)
        self.slice_has_lesion = np.zeros(0, dtype=bool)

    def randomize(self, label: Optional[NdarrayOrTensor] = None, depth: Optional[int] = None) -> None:
        """Draw ``self.slice_indices`` (and ``self.slice_has_lesion``) as :meth:`RandLesionSlice.randomize`."""
        self.slice_indices, self.slice_has_lesion = _draw(label, depth, self.num_samples, self.R, type(self).__name__)

    def __call__(self, data: Mapping[Hashable, Any]) -> Union[Dict[Hashable, Any], List[Dict[Hashable, Any]]]:
        d = dict(data)
        name = type(self).__name__
        label = None
        if self.label_key is not None:
            if self.label_key not in d:
                raise KeyError(f"{name}: label_key {self.label_key!r} is not in the data (keys: {sorted(map(str, d))}); "
                               f"pass label_key=None to sample slices uniformly")
            label = d[self.label_key]
        keys: List[Hashable] = list(self.key_iterator(d))
        if self.label_key is not None and self.label_key not in keys:
            keys.append(self.label_key)
        depth = _check_volume(label, f"{name} key {self.label_key!r}") if label is not None else None
        for key in keys:
            depth = _check_volume(d[key], f"{name} key {key!r}", depth)
        if depth is None:
            raise ValueError(f"{name}: no key of {self.keys} is in the data and there is no label to sample from")
        self.randomize(label, depth)
        outputs = []
        for k, lesion in zip(self.slice_indices, self.slice_has_lesion):
            out = dict(d)
            for key in keys:
                out[key] = take_slice(d[key], int(k))
            out[self.slice_index_key] = int(k)
            out[self.has_lesion_key] = torch.tensor([float(lesion)], dtype=torch.float32)
            outputs.append(out)
        return outputs[0] if self.num_samples == 1 else outputs
