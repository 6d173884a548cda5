"""Batches of whole volumes with different depths: pad along the last axis, remember the true depths.

SMART-Net's 2D->3D downstream feeds every slice of a scan to a slice encoder and then a sequence
model (BiLSTM packed by true depth) or a 3D head, so volumes (C, H, W, D_i) of one batch are padded
with zeros AT THE END of the depth axis (the reference's collate) and their depths travel along.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
from monai.engines.utils import PrepareBatch
from monai.transforms import PadListDataCollate
from monai.utils import CommonKeys, convert_to_tensor

__all__ = ["pad_depth_collate", "PrepareVolumeBatch", "DEPTH_KEY"]

#: batch key of the true depths added by :func:`pad_depth_collate`
DEPTH_KEY = "depth"


def _shape(value: Any, key: str, index: int) -> Tuple[int, ...]:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"pad_depth_collate: batch[{index}][{key!r}] must be a tensor or array (C, H, W, D), "
                        f"got {type(value).__name__}")
    if value.ndim != 4:
        raise ValueError(f"pad_depth_collate: batch[{index}][{key!r}] must be (C, H, W, D), "
                         f"got shape {tuple(value.shape)}")
    return tuple(int(s) for s in value.shape)


def pad_depth_collate(batch: Sequence[Mapping[str, Any]], keys: Sequence[str] = (CommonKeys.IMAGE, CommonKeys.LABEL),
                      depth_key: str = DEPTH_KEY) -> Dict[str, Any]:
    """Collate volumes of different depths: zero-pad ``keys`` at the end of the last axis, add the depths.

    A ``collate_fn`` for ``DataLoader`` (in a config:
    ``{"_target_": "genesis_monai.data.depth_collate.pad_depth_collate", "_mode_": "callable"}``).
    Every item is a dict whose ``keys`` hold (C, H, W, D_i) tensors/arrays (MetaTensors keep their
    meta data); ``C, H, W`` must agree across the batch and all ``keys`` of an item must have the
    same depth. The padding is MONAI's ``PadListDataCollate(method="end")`` (its
    inverse crops it again); the remaining keys are collated as ``list_data_collate`` does.

    Returns:
        the collated dict: ``keys`` as (B, C, H, W, max D_i) with zeros past each depth, and
        ``batch[depth_key]`` = ``torch.LongTensor`` (B,) of the true depths ``D_i``.
    """
    if not isinstance(batch, (list, tuple)) or not batch:
        raise ValueError(f"pad_depth_collate: expected a non-empty list of dicts, got {type(batch).__name__}")
    keys = [str(k) for k in ([keys] if isinstance(keys, str) else keys)]
    if not keys:
        raise ValueError("pad_depth_collate: keys must name at least one key to pad")
    items: List[Dict[str, Any]] = []
    depths = []
    for index, item in enumerate(batch):
        if not isinstance(item, Mapping):
            raise TypeError(f"pad_depth_collate: batch[{index}] must be a dict, got {type(item).__name__}")
        missing = [k for k in keys if k not in item]
        if missing:
            raise KeyError(f"pad_depth_collate: batch[{index}] has no key(s) {missing} (keys: {list(item)})")
        if depth_key in item:
            raise KeyError(f"pad_depth_collate: batch[{index}] already has a {depth_key!r} key; "
                           f"choose another depth_key")
        shapes = {k: _shape(item[k], k, index) for k in keys}
        item_depths = {k: s[-1] for k, s in shapes.items()}
        if len(set(item_depths.values())) != 1:
            raise ValueError(f"pad_depth_collate: batch[{index}] keys have different depths {item_depths}")
        if index == 0:
            reference = {k: s[:-1] for k, s in shapes.items()}
        for k, s in shapes.items():
            if s[:-1] != reference[k]:
                raise ValueError(f"pad_depth_collate: batch[{index}][{k!r}] is {s} but batch[0][{k!r}] is "
                                 f"{reference[k] + (batch[0][k].shape[-1],)}: only the depth (last axis) may differ")
        depths.append(item_depths[keys[0]])
        items.append({**item, depth_key: item_depths[keys[0]]})  # a new dict: the dataset's item is not changed
    collated = PadListDataCollate(method="end", mode="constant")(items)
    collated[depth_key] = torch.as_tensor(depths, dtype=torch.long)
    return collated


class PrepareVolumeBatch(PrepareBatch):
    """``prepare_batch`` for MONAI trainers/evaluators on depth-padded volume batches.

    Returns ``(inputs, targets, (), {depths_arg: depths})``; MONAI 1.6.1's ``SupervisedTrainer`` and
    ``SupervisedEvaluator`` unpack such a 4-tuple and call ``inferer(inputs, network, **kwargs)``, so a
    ``SimpleInferer`` runs ``network(inputs, depths=depths)``.

    - ``inputs``: ``batch[image_key]`` (B, C, H, W, D) as a plain float tensor on the device;
    - ``targets``: ``target="label"``: ``batch[label_key]`` (B, 1, H, W, D) float32 on the device (volume
      segmentation); ``target="volume_label"``: (B, 1) float32, 1.0 when the label volume has any voxel
      > 0 else 0.0 (volume classification, the reference's label);
    - ``depths``: ``batch[depth_key]`` (B,) int64 (:func:`pad_depth_collate`), or the full depth for
      every volume when the batch has no such key (all volumes of equal depth). Kept on the CPU by
      default: ``pack_padded_sequence`` wants CPU lengths (``depths_on_device=True`` moves them).

    Args:
        image_key: key of the volumes.
        label_key: key of the label volumes.
        target: ``"label"`` or ``"volume_label"``.
        depth_key: key of the true depths.
        depths_arg: name of the network's keyword argument.
        depths_on_device: move the depths to the device too.
    """

    TARGETS = ("label", "volume_label")

    def __init__(self, image_key: str = CommonKeys.IMAGE, label_key: str = CommonKeys.LABEL, target: str = "label",
                 depth_key: str = DEPTH_KEY, depths_arg: str = "depths", depths_on_device: bool = False) -> None:
        if target not in self.TARGETS:
            raise ValueError(f"PrepareVolumeBatch: target must be one of {self.TARGETS}, got {target!r}")
        self.image_key = str(image_key)
        self.label_key = str(label_key)
        self.target = target
        self.depth_key = str(depth_key)
        self.depths_arg = str(depths_arg)
        self.depths_on_device = bool(depths_on_device)

    def __call__(self, batchdata: Dict[str, Any], device: Union[str, torch.device, None] = None,
                 non_blocking: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, tuple, Dict[str, Any]]:
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"PrepareVolumeBatch: expected a dict batch, got {type(batchdata).__name__}")
        missing = [k for k in (self.image_key, self.label_key) if k not in batchdata]
        if missing:
            raise KeyError(f"PrepareVolumeBatch: batch has no key(s) {missing} (found {list(batchdata)})")
        images = convert_to_tensor(batchdata[self.image_key], track_meta=False)
        labels = convert_to_tensor(batchdata[self.label_key], track_meta=False)
        if images.ndim != 5 or labels.ndim != 5 or images.shape[0] != labels.shape[0] or \
                images.shape[2:] != labels.shape[2:]:
            raise ValueError(f"PrepareVolumeBatch: expected {self.image_key!r} (B, C, H, W, D) and {self.label_key!r} "
                             f"(B, 1, H, W, D), got {tuple(images.shape)} and {tuple(labels.shape)}")
        batch_size, depth = images.shape[0], images.shape[-1]
        if self.depth_key in batchdata:
            depths = convert_to_tensor(batchdata[self.depth_key], track_meta=False).reshape(-1).long()
            if depths.numel() != batch_size or bool((depths < 1).any()) or bool((depths > depth).any()):
                raise ValueError(f"PrepareVolumeBatch: batch[{self.depth_key!r}] must be {batch_size} depths in "
                                 f"[1, {depth}], got {depths.tolist()}")
        else:
            depths = torch.full((batch_size,), depth, dtype=torch.long)
        if self.target == "volume_label":
            # reduce before moving: the label volume itself is not needed on the device
            targets = (labels.reshape(batch_size, -1) > 0).any(dim=1, keepdim=True).float()
        else:
            targets = labels.float() if not labels.is_floating_point() else labels
        inputs = images.to(device=device, non_blocking=non_blocking, **kwargs)
        if not inputs.is_floating_point():
            inputs = inputs.float()
        targets = targets.to(device=device, non_blocking=non_blocking, **kwargs)
        if self.depths_on_device:
            depths = depths.to(device=device, non_blocking=non_blocking)
        return inputs, targets, (), {self.depths_arg: depths}
