"""Batch preparation for supervised multi-task networks: one input, a dict of named targets (SMART-Net)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple, Union

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys, convert_to_tensor

__all__ = ["PrepareTargetsBatch"]


class PrepareTargetsBatch(PrepareBatch):
    """``prepare_batch`` for MONAI trainers/evaluators: ``(batch[image_key], {name: batch[key], ...})`` on the device.

    SMART-Net's upstream trains three heads on one slice: the targets are the slice-level label, the
    mask and the slice itself, e.g. ``targets={"cls": "has_lesion", "seg": "label", "rec": "image"}``;
    :class:`genesis_monai.losses.MultiTaskLoss` terms and the metrics read them by name. Targets of
    shape (N,) become (N, 1) so they match (N, 1) logits; all are float32 plain tensors (no meta data).

    Args:
        targets: target name -> batch key (a key may serve several names, e.g. the image).
        image_key: key of the network input (N, C, *spatial).
    """

    def __init__(self, targets: Mapping[str, str], image_key: str = CommonKeys.IMAGE):
        if not isinstance(targets, Mapping) or not targets:
            raise ValueError(f"PrepareTargetsBatch: targets must be a non-empty mapping name -> batch key, got {targets!r}")
        self.targets = {str(k): str(v) for k, v in targets.items()}
        self.image_key = str(image_key)

    def _tensor(self, batchdata: Mapping[str, Any], key: str, device, non_blocking: bool, **kwargs) -> torch.Tensor:
        value = convert_to_tensor(batchdata[key], track_meta=False)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"PrepareTargetsBatch: batch[{key!r}] is not numeric (got {type(value).__name__})")
        if value.ndim == 1:
            value = value[:, None]
        return value.to(device=device, dtype=torch.float32, non_blocking=non_blocking, **kwargs)

    def __call__(self, batchdata: Dict[str, Any], device: Union[str, torch.device, None] = None,
                 non_blocking: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if not isinstance(batchdata, dict):
            raise TypeError(f"PrepareTargetsBatch: expected a dict batch, got {type(batchdata).__name__}")
        missing = [k for k in [self.image_key, *self.targets.values()] if k not in batchdata]
        if missing:
            raise KeyError(f"PrepareTargetsBatch: batch has no key(s) {sorted(set(missing))} (found {list(batchdata)})")
        images = self._tensor(batchdata, self.image_key, device, non_blocking, **kwargs)
        targets = {name: images if key == self.image_key else self._tensor(batchdata, key, device, non_blocking, **kwargs)
                   for name, key in self.targets.items()}
        return images, targets
