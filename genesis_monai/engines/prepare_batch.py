"""Batch preparation that degrades cubes on the training device (restoration pretraining)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys

__all__ = ["PrepareDegradedBatch"]


class PrepareDegradedBatch(PrepareBatch):
    """``prepare_batch`` for MONAI trainers/evaluators: (degraded cubes, original cubes).

    Moves ``batchdata[image_key]`` (N, C, X, Y, Z) in [0, 1] to the device, then applies
    ``degrade`` (e.g. :class:`genesis_monai.transforms.GenesisDegrade`) to the whole batch there,
    so degradation never runs per sample on the data-loader CPU. The network input is the
    degraded batch, the target the (flipped) original.

    Args:
        degrade: callable ``(x, generator=...) -> (degraded, target)``.
        image_key: key of the cubes in the batch dict.
        seed: if given, degradations are drawn from a private ``torch.Generator`` seeded with it,
            re-seeded by :meth:`reset` (attach :meth:`attach` to an evaluator so every validation
            pass sees the same degradations and validation losses are comparable across epochs).
    """

    def __init__(self, degrade: Callable[..., Tuple[torch.Tensor, torch.Tensor]], image_key: str = CommonKeys.IMAGE,
                 seed: Optional[int] = None):
        self.degrade = degrade
        self.image_key = str(image_key)
        self.seed = seed
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
                 non_blocking: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batchdata, dict) or self.image_key not in batchdata:
            keys = list(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise KeyError(f"PrepareDegradedBatch: batch has no key {self.image_key!r} (found {keys})")
        images = batchdata[self.image_key]
        images = torch.as_tensor(images).to(device=device, non_blocking=non_blocking, **kwargs)
        if hasattr(images, "as_tensor"):  # MetaTensor -> plain tensor: meta is meaningless for degraded cubes
            images = images.as_tensor()
        generator = None
        if self.seed is not None:
            if self._generator is None or self._generator.device != images.device:
                self.reset(images.device)
            generator = self._generator
        return self.degrade(images, generator=generator)
