"""Dictionary versions of the Genesis degradations (MONAI ``MapTransform`` idiom).

The per-key transforms share one random draw per call across all keys (same decision, same
seed), like MONAI's own ``Rand*d`` transforms. ``GenesisDegraded`` turns ``data[key]`` into the
degraded sample and stores the restoration target under ``target_key``.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, ensure_tuple_rep

from .array import RandBezierIntensity, RandInPaint, RandLocalPixelShuffle, RandOutPaint, _as_plain_tensor
from . import validation
from .batch import PRESETS, GenesisDegrade

__all__ = ["RandLocalPixelShuffled", "RandBezierIntensityd", "RandInPaintd", "RandOutPaintd", "GenesisDegraded"]


class _GenesisRandDict(RandomizableTransform, MapTransform):
    """Maps ``keys`` onto one array transform (``array_class``); ``prob``, ``spatial_dims``,
    ``check_range`` and the other keyword arguments go to it."""

    array_class: type = RandLocalPixelShuffle

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False, **kwargs: Any):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)  # prob lives in the array transform
        self.transform = self.array_class(prob=prob, **kwargs)

    def set_random_state(self, seed: Optional[int] = None, state: Optional[np.random.RandomState] = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.transform.randomize(None)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> Dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d


class RandLocalPixelShuffled(_GenesisRandDict):
    """Dictionary :class:`.array.RandLocalPixelShuffle`."""
    array_class = RandLocalPixelShuffle


class RandBezierIntensityd(_GenesisRandDict):
    """Dictionary :class:`.array.RandBezierIntensity`."""
    array_class = RandBezierIntensity


class RandInPaintd(_GenesisRandDict):
    """Dictionary :class:`.array.RandInPaint`."""
    array_class = RandInPaint


class RandOutPaintd(_GenesisRandDict):
    """Dictionary :class:`.array.RandOutPaint`."""
    array_class = RandOutPaint


class GenesisDegraded(RandomizableTransform, MapTransform):
    """Per-sample Genesis degradation pair in a dictionary pipeline.

    ``data[key]`` (C, X, Y, Z) (``spatial_dims=3``) or (C, X, Y) (``spatial_dims=2``) in [0, 1]
    becomes the degraded sample and ``data[target_key]`` the restoration target (the flipped
    original), both of the input's kind (meta kept). Runs the batch operator
    :class:`.batch.GenesisDegrade` on a batch of one.

    Args:
        keys: image key(s). target_key: key(s) for the targets (one per key).
        preset: optional preset name ("models_genesis", "semantic_genesis", "transvw").
        spatial_dims: 3 (default) or 2; a sample of another rank is an error.
        **kwargs: :class:`.batch.GenesisDegrade` arguments (override the preset), e.g.
            ``check_range=False``.
    """

    def __init__(self, keys: KeysCollection, target_key: Union[str, Sequence[str]] = "target",
                 preset: Optional[str] = None, allow_missing_keys: bool = False, spatial_dims: int = 3,
                 **kwargs: Any):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.target_keys = ensure_tuple_rep(target_key, len(self.keys))
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        kwargs["spatial_dims"] = spatial_dims
        self.degrade = GenesisDegrade.from_preset(preset, **kwargs) if preset else GenesisDegrade(**kwargs)
        self.spatial_dims = self.degrade.spatial_dims
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> Dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize()
        for key, target_key in self.key_iterator(d, self.target_keys):
            img = d[key]
            x = _as_plain_tensor(img)
            name = f"{type(self).__name__} key {key!r}"
            validation.check_sample(x, name, self.spatial_dims)
            if self.degrade.check_range:
                validation.check_range(x, name)
            generator = torch.Generator(device=x.device)
            generator.manual_seed(self._seed)
            # checked here, with the key in the message: the operator need not check again
            degraded, target = self.degrade._degrade(x.unsqueeze(0), generator)
            d[key] = convert_to_dst_type(degraded[0], dst=img)[0]
            d[target_key] = convert_to_dst_type(target[0], dst=img)[0]
        return d
