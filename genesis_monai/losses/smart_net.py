"""SMART-Net's losses: the consistency term between the classification and segmentation heads, the batch-global
Dice + BCE segmentation loss, and the multi-task recipe that sums them.

The 2022 code's upstream loss (METHODS.md §3, research/upstream_adam_smartnet.md §B1) is a
:class:`~genesis_monai.losses.MultiTaskLoss` of four named terms over
:class:`~genesis_monai.networks.SMARTNet`'s output dict and a target dict with the same keys
(:func:`genesis_monai.engines.pretexts.pretext_targets`)::

    "loss": {
        "_target_": "genesis_monai.losses.MultiTaskLoss",
        "terms": {
            "classification": {"loss": {"_target_": "torch.nn.BCEWithLogitsLoss"}, "weight": 1.0,
                               "pred_key": "cls", "target_key": "cls"},
            "segmentation": {"loss": {"_target_": "genesis_monai.losses.BatchDiceBCELoss"}, "weight": 1.0,
                             "pred_key": "seg", "target_key": "seg"},
            "reconstruction": {"loss": {"_target_": "torch.nn.L1Loss"}, "weight": 1.0,
                               "pred_key": "rec", "target_key": "rec"},
            "consistency": {"loss": {"_target_": "genesis_monai.losses.ConsistencyLoss"}, "weight": 0.5,
                            "pred_key": null, "target_key": null}
        }
    }

(the consistency term reads the whole prediction dict, ``"cls"`` and ``"seg"``, and no target).
:func:`smart_net_loss` builds that recipe, or its subset for an ablation's ``pretexts``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from genesis_monai.losses.multi_task import MultiTaskLoss

__all__ = ["consistency_loss", "ConsistencyLoss", "batch_dice_loss", "BatchDiceBCELoss", "smart_net_loss",
           "DEFAULT_WEIGHTS"]

#: the 2022 code's term weights
DEFAULT_WEIGHTS = {"classification": 1.0, "segmentation": 1.0, "reconstruction": 1.0, "consistency": 0.5}


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    # sums over a batch of 256 x 256 maps overflow float16 (max 65504): reduce in float32 under AMP
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def consistency_loss(cls_logits: torch.Tensor, seg_logits: torch.Tensor, pool: int = 16) -> torch.Tensor:
    """MSE between sigmoid(cls) and the block-max-then-average of sigmoid(seg); a scalar tensor.

    ``pooled = mean over blocks of max over each pool x pool block of sigmoid(seg)``. For a 256 x 256
    map (the paper's input) and ``pool=16`` this is exactly the 2022 code's
    ``AvgPool2d(16)(MaxPool2d(16)(sigmoid(seg)))``: the mean over the 16 x 16 grid of 16 x 16 block maxima
    (it mimics ResNet-50's downsampling then global average pool). For other sizes the block maxima
    are averaged globally (the reference's fixed 16 x 16 average pool would leave several values, or
    fail, there). Gradients reach both heads (no stop-gradient).

    Args:
        cls_logits: (B, 1) classification logits.
        seg_logits: (B, 1, H, W) segmentation logits, H and W divisible by ``pool``.
        pool: block size of the max pool.
    """
    if cls_logits.ndim != 2 or cls_logits.shape[1] != 1:
        raise ValueError(f"consistency_loss: cls logits must be (B, 1), got {tuple(cls_logits.shape)}")
    if seg_logits.ndim != 4 or seg_logits.shape[1] != 1 or seg_logits.shape[0] != cls_logits.shape[0]:
        raise ValueError(f"consistency_loss: seg logits must be (B, 1, H, W) with B = {cls_logits.shape[0]}, got "
                         f"{tuple(seg_logits.shape)}")
    k = int(pool)
    h, w = seg_logits.shape[2:]
    if k < 1 or h % k or w % k:
        raise ValueError(f"consistency_loss: the seg map's H x W = {h} x {w} must be divisible by pool = {pool}")
    blocks = F.max_pool2d(torch.sigmoid(_full_precision(seg_logits)), kernel_size=k, stride=k)
    pooled = blocks.mean(dim=(2, 3))  # (B, 1)
    return F.mse_loss(pooled, torch.sigmoid(_full_precision(cls_logits)).to(pooled.dtype))


class ConsistencyLoss(nn.Module):
    """:func:`consistency_loss` over a SMARTNet output dict: ``forward(pred, target=None)`` reads
    ``pred["cls"]`` and ``pred["seg"]`` (a :class:`MultiTaskLoss` term with ``pred_key`` null); ``target``
    is ignored."""

    def __init__(self, pool: int = 16):
        super().__init__()
        if int(pool) < 1:
            raise ValueError(f"ConsistencyLoss: pool must be >= 1, got {pool}")
        self.pool = int(pool)

    def forward(self, pred: Mapping[str, torch.Tensor], target: Any = None) -> torch.Tensor:
        if not isinstance(pred, Mapping) or "cls" not in pred or "seg" not in pred:
            got = sorted(pred) if isinstance(pred, Mapping) else type(pred).__name__
            raise KeyError(f"ConsistencyLoss needs the network's output dict with 'cls' and 'seg' (a network with "
                           f"both heads, loss term pred_key null), got {got}")
        return consistency_loss(pred["cls"], pred["seg"], self.pool)


def batch_dice_loss(seg_logits: torch.Tensor, mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Binary soft Dice loss over the whole batch: ``1 - 2 sum(p t) / max(sum(p) + sum(t), eps)``, p = sigmoid.

    Sums run over the batch and all pixels (one Dice for the batch, smooth 0). The loss is 0 when
    the batch's mask has no foreground (Dice is undefined there; the 2022 code zeroes it).
    """
    p = torch.sigmoid(_full_precision(seg_logits)).flatten()
    t = mask.to(p.dtype).flatten()
    intersection = (p * t).sum()
    cardinality = (p + t).sum().clamp_min(eps)
    loss = 1.0 - 2.0 * intersection / cardinality
    return loss * (t.sum() > 0).to(p.dtype)


class BatchDiceBCELoss(nn.Module):
    """``dice_weight * batch_dice_loss + bce_weight * BCEWithLogits``: SMART-Net's segmentation loss; a scalar.

    MONAI's ``DiceLoss(batch=True, sigmoid=True)`` differs (it adds ``smooth_dr`` to the denominator
    instead of clamping, and does not zero an empty batch), hence this one.

    ``forward(seg_logits, mask)``: logits (B, 1, *spatial) and a binary mask of the same shape (any
    numeric dtype; values in {0, 1}).
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, eps: float = 1e-7):
        super().__init__()
        if float(dice_weight) < 0 or float(bce_weight) < 0 or float(eps) <= 0:
            raise ValueError(f"BatchDiceBCELoss: weights must be >= 0 and eps > 0, got dice_weight={dice_weight}, "
                             f"bce_weight={bce_weight}, eps={eps}")
        self.dice_weight, self.bce_weight, self.eps = float(dice_weight), float(bce_weight), float(eps)

    def forward(self, seg_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if tuple(seg_logits.shape) != tuple(mask.shape):
            raise ValueError(f"BatchDiceBCELoss: logits {tuple(seg_logits.shape)} and mask {tuple(mask.shape)} must "
                             "have the same shape")
        logits = _full_precision(seg_logits)
        target = mask.to(logits.dtype)
        dice = batch_dice_loss(logits, target, self.eps)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.dice_weight * dice + self.bce_weight * bce


def smart_net_loss(pretexts: Union[str, Sequence[str]] = "cls+seg+rec",
                   weights: Optional[Mapping[str, float]] = None,
                   consistency: Optional[bool] = None) -> MultiTaskLoss:
    """The SMART-Net upstream loss for the heads in ``pretexts``, as a :class:`MultiTaskLoss`.

    Terms (names become log tags ``loss_<name>``): ``classification`` (BCEWithLogits, "cls"/"cls"),
    ``segmentation`` (:class:`BatchDiceBCELoss`, "seg"/"seg"), ``reconstruction`` (L1, "rec"/"rec"),
    ``consistency`` (:class:`ConsistencyLoss`, pred_key null).

    Args:
        pretexts: the network's heads (``"cls+seg+rec"``, ``"cls+seg"``, ...).
        weights: term name -> weight, overriding :data:`DEFAULT_WEIGHTS` (1, 1, 1, 0.5); entries for
            terms not built are allowed (one config serves every ablation), unknown names are not.
        consistency: None = the 2022 code's rule (only for the full ``cls+seg+rec`` model); True = whenever
            cls and seg are both present (the graphical abstract's "CLS+SEG w/ consist"); False = never.
    """
    from genesis_monai.networks.smart_net import parse_pretexts

    heads = parse_pretexts(pretexts)
    w = dict(DEFAULT_WEIGHTS)
    unknown = sorted(set(weights or {}) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"smart_net_loss: unknown loss weight(s) {unknown}; expected names among "
                         f"{list(DEFAULT_WEIGHTS)}")
    w.update({k: float(v) for k, v in (weights or {}).items()})
    if consistency is None:
        use_consistency = set(heads) == {"cls", "seg", "rec"}
    elif consistency:
        if not {"cls", "seg"} <= set(heads):
            raise ValueError(f"smart_net_loss: consistency=True needs the cls and seg heads, pretexts are "
                             f"{'+'.join(heads)!r}")
        use_consistency = True
    else:
        use_consistency = False
    terms: Dict[str, Dict[str, Any]] = {}
    if "cls" in heads:
        terms["classification"] = {"loss": nn.BCEWithLogitsLoss(), "weight": w["classification"], "pred_key": "cls",
                                   "target_key": "cls"}
    if "seg" in heads:
        terms["segmentation"] = {"loss": BatchDiceBCELoss(), "weight": w["segmentation"], "pred_key": "seg",
                                 "target_key": "seg"}
    if "rec" in heads:
        terms["reconstruction"] = {"loss": nn.L1Loss(), "weight": w["reconstruction"], "pred_key": "rec",
                                   "target_key": "rec"}
    if use_consistency:
        terms["consistency"] = {"loss": ConsistencyLoss(), "weight": w["consistency"], "pred_key": None,
                                "target_key": None}
    return MultiTaskLoss(terms)
