"""Batch preparation that degrades cubes on the training device (restoration pretraining)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import inspect

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys, convert_to_tensor

__all__ = ["PrepareDegradedBatch", "PrepareReconstructionBatch", "RESTORATION_TARGET"]

#: name of the restoration target in the targets dict when extra targets are passed through
RESTORATION_TARGET = "restoration"


class PrepareDegradedBatch(PrepareBatch):
    """``prepare_batch`` for MONAI trainers/evaluators: (degraded cubes, targets).

    Moves ``batchdata[image_key]`` (N, C, *spatial) in [0, 1] to the device, then applies
    ``degrade`` (e.g. :class:`genesis_monai.transforms.GenesisDegrade`) to the whole batch there,
    so degradation never runs per sample on the data-loader CPU. The network input is the
    degraded batch.

    The targets are the (flipped) original batch when ``extra_targets`` is empty (Models Genesis:
    ``loss(pred, target)`` with a plain ``MSELoss``). With ``extra_targets`` (e.g.
    ``{"class": "label"}`` for Semantic Genesis' pseudo labels) they are a dict
    ``{"restoration": original, "class": batchdata["label"], ...}`` on the device, which
    :class:`genesis_monai.losses.MultiTaskLoss` terms and the monitors read by name.

    Args:
        degrade: callable ``(x, generator=...) -> (degraded, target)``.
        image_key: key of the cubes in the batch dict.
        seed: if given, degradations are drawn from a private ``torch.Generator`` seeded with it,
            re-seeded by :meth:`reset` (attach :meth:`attach` to an evaluator so every validation
            pass sees the same degradations and validation losses are comparable across epochs).
        extra_targets: target name -> batch key of further targets to pass through (moved to the
            device unchanged; they must not be called ``"restoration"``).
        augment: optional batch augmentation applied before ``degrade`` (e.g.
            :class:`genesis_monai.transforms.RandElasticInPlane`): ``augment(x[, generator=...]) -> x``.
        restore_augmented: restoration target when ``augment`` is set. ``False`` (the Semantic
            Genesis / TransVW reference): the cube BEFORE augmentation, so the network must also undo
            the elastic warp; ``True``: the augmented cube (restoration of the degradation only).
            ``False`` needs a ``degrade`` without flips (a flip would apply to the input only).
    """

    def __init__(self, degrade: Callable[..., Tuple[torch.Tensor, torch.Tensor]], image_key: str = CommonKeys.IMAGE,
                 seed: Optional[int] = None, extra_targets: Optional[Mapping[str, str]] = None,
                 augment: Optional[Callable[..., torch.Tensor]] = None, restore_augmented: bool = False):
        self.degrade = degrade
        self.augment = augment
        self.restore_augmented = bool(restore_augmented)
        if augment is not None and not self.restore_augmented and float(getattr(degrade, "flip_rate", 0.0) or 0.0) > 0:
            raise ValueError("PrepareDegradedBatch: restore_augmented=False restores the cube before augmentation, "
                             "which a flipping degradation (flip_rate > 0) would not match; set flip_rate=0 or "
                             "restore_augmented=True")
        self._augment_takes_generator = augment is not None and _takes_generator(augment)
        self.image_key = str(image_key)
        self.seed = seed
        self.extra_targets = dict(extra_targets or {})
        if RESTORATION_TARGET in self.extra_targets:
            raise ValueError(f"extra_targets may not use the name {RESTORATION_TARGET!r}: it is the restoration target")
        self._generator: Optional[torch.Generator] = None

    def reset(self, device: Union[str, torch.device, None] = None) -> None:
        """Re-seed the private generator (no-op without ``seed``)."""
        if self.seed is None:
            return
        device = torch.device(device) if device is not None else (
            self._generator.device if self._generator is not None else torch.device("cpu"))
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(self.seed)

    def attach(self, engine) -> None:
        """Re-seed at the start of every run of ``engine`` (an Ignite engine)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.reset(getattr(engine.state, "device", None)))

    def __call__(self, batchdata: Dict[str, Any], device: Union[str, torch.device, None] = None,
                 non_blocking: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, Any]:
        if not isinstance(batchdata, dict) or self.image_key not in batchdata:
            keys = list(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise KeyError(f"PrepareDegradedBatch: batch has no key {self.image_key!r} (found {keys})")
        missing = [k for k in self.extra_targets.values() if k not in batchdata]
        if missing:
            raise KeyError(f"PrepareDegradedBatch: extra targets {missing} are not in the batch (keys: {list(batchdata)})")
        # plain tensors: meta data means nothing for degraded cubes and slows every op down
        images = convert_to_tensor(batchdata[self.image_key], track_meta=False).to(
            device=device, non_blocking=non_blocking, **kwargs)
        generator = None
        if self.seed is not None:
            if self._generator is None or self._generator.device != images.device:
                self.reset(images.device)
            generator = self._generator
        if self.augment is not None:
            augmented = (self.augment(images, generator=generator) if self._augment_takes_generator
                         else self.augment(images))
            degraded, target = self.degrade(augmented, generator=generator)
            if not self.restore_augmented:
                target = images
        else:
            degraded, target = self.degrade(images, generator=generator)
        if not self.extra_targets:
            return degraded, target
        targets = {RESTORATION_TARGET: target}
        for name, key in self.extra_targets.items():
            targets[name] = convert_to_tensor(batchdata[key], track_meta=False).to(
                device=device, non_blocking=non_blocking, **kwargs)
        return degraded, targets


def _takes_generator(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


class PrepareReconstructionBatch(PrepareBatch):
    """``prepare_batch`` for an auto-encoder (self-discovery step 1): (images, images) on the device.

    The network input and the reconstruction target are the same batch ``batchdata[image_key]``
    (N, C, *spatial), as plain tensors (no meta data).
    """

    def __init__(self, image_key: str = CommonKeys.IMAGE):
        self.image_key = str(image_key)

    def __call__(self, batchdata: Dict[str, Any], device: Union[str, torch.device, None] = None,
                 non_blocking: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batchdata, dict) or self.image_key not in batchdata:
            keys = list(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise KeyError(f"PrepareReconstructionBatch: batch has no key {self.image_key!r} (found {keys})")
        images = convert_to_tensor(batchdata[self.image_key], track_meta=False).to(
            device=device, non_blocking=non_blocking, **kwargs)
        return images, images
