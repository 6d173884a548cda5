"""The pretext heads of a multi-head slice network (SMART-Net upstream): their targets and validation metrics.

The evaluator's output (``decollate=False``) holds the network's dict of logits under ``"pred"`` and
:class:`~genesis_monai.engines.multi_target_batch.PrepareTargetsBatch`'s dict of targets under
``"label"``. :func:`pretext_metrics` returns MONAI / Ignite metrics keyed by their log names, only
for the heads named in ``pretexts``, so one config serves every pretext combination of the paper's
ablations:

* ``cls``: ``val_auc`` (MONAI ROCAUC on sigmoid(cls)), ``val_f1``, ``val_sensitivity``,
  ``val_specificity``, ``val_accuracy`` (MONAI ConfusionMatrix at ``threshold``);
* ``seg``: ``val_dice`` (MONAI MeanDice of the thresholded sigmoid(seg); slices whose mask and
  prediction are both empty are left out of the mean, as MONAI does with ``ignore_empty``);
* ``rec``: ``val_rec_mae`` (Ignite MeanAbsoluteError of the reconstruction against the input).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = ["pretext_metrics", "pretext_targets", "parse_pretexts", "PRETEXTS", "PRETEXT_TARGET_KEYS"]

from genesis_monai.networks.smart_net import PRETEXTS, parse_pretexts


#: the batch key each head learns from: the slice label, the mask, the (augmented) input slice itself
PRETEXT_TARGET_KEYS = {"cls": "has_lesion", "seg": "label", "rec": "image"}


def pretext_targets(pretexts: Union[str, Sequence[str]], keys: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Target name -> batch key for the enabled heads (for :class:`~genesis_monai.engines.PrepareTargetsBatch`).

    ``keys`` overrides entries of :data:`PRETEXT_TARGET_KEYS` (e.g. ``{"cls": "slice_label"}``).
    """
    table = {**PRETEXT_TARGET_KEYS, **dict(keys or {})}
    return {head: table[head] for head in parse_pretexts(pretexts)}


def _pair(head: str, transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], Tuple[torch.Tensor, torch.Tensor]]:
    def output_transform(output: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        pred, label = output["pred"], output["label"]
        return transform(pred[head].detach().float()), label[head].float()

    return output_transform


def _flat_pair(head: str) -> Callable[[Any], Tuple[torch.Tensor, torch.Tensor]]:
    def output_transform(output: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        return output["pred"][head].detach().float().reshape(-1), output["label"][head].float().reshape(-1)

    return output_transform


def pretext_metrics(pretexts: Union[str, Sequence[str]], threshold: float = 0.5) -> Dict[str, Any]:
    """Metric objects (name -> metric) for the evaluator's ``additional_metrics``, for the enabled heads."""
    from ignite.metrics import MeanAbsoluteError
    from monai.handlers import ROCAUC, ConfusionMatrix, MeanDice

    heads = parse_pretexts(pretexts)
    t = float(threshold)

    def binary(x: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(x) >= t).float()

    metrics: Dict[str, Any] = {}
    if "cls" in heads:
        metrics["val_auc"] = ROCAUC(output_transform=_pair("cls", torch.sigmoid))
        for name, monai_name in (("f1", "f1 score"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                                 ("accuracy", "accuracy")):
            metrics[f"val_{name}"] = ConfusionMatrix(metric_name=monai_name, output_transform=_pair("cls", binary))
    if "seg" in heads:
        metrics["val_dice"] = MeanDice(include_background=True, output_transform=_pair("seg", binary))
    if "rec" in heads:
        # flattened: Ignite's MeanAbsoluteError divides by the number of rows, so one row per pixel gives the mean
        metrics["val_rec_mae"] = MeanAbsoluteError(output_transform=_flat_pair("rec"))
    return metrics
