"""SMART-Net losses: consistency between heads, batch-global Dice + BCE, and the multi-task recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from genesis_monai.losses import (BatchDiceBCELoss, ConsistencyLoss, MultiTaskLoss, consistency_loss,
                                  smart_net_loss)
from genesis_monai.networks import SMARTNet


def _logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p) - torch.log1p(-p)


def _block_map(maxima: torch.Tensor, block: int = 16, background: float = 0.05) -> torch.Tensor:
    """(B, g, g) block maxima -> (B, 1, g*block, g*block) probabilities with that maximum in every block."""
    b, g, _ = maxima.shape
    prob = torch.full((b, 1, g * block, g * block), background, dtype=torch.float64)
    # one pixel per block at a block-dependent offset carries the maximum
    for i in range(g):
        for j in range(g):
            prob[:, 0, i * block + (i + j) % block, j * block + (3 * i + j) % block] = maxima[:, i, j]
    return prob


def test_consistency_equals_hand_computation_on_256():
    gen = torch.Generator().manual_seed(0)
    maxima = 0.1 + 0.8 * torch.rand(2, 16, 16, generator=gen, dtype=torch.float64)
    seg = _logit(_block_map(maxima)).requires_grad_(True)
    p_cls = torch.tensor([[0.3], [0.9]], dtype=torch.float64)
    cls = _logit(p_cls).requires_grad_(True)
    loss = consistency_loss(cls, seg)
    pooled = maxima.mean(dim=(1, 2))  # mean over the 16 x 16 grid of 16 x 16 block maxima
    expected = ((pooled - p_cls[:, 0]) ** 2).mean()
    assert loss.ndim == 0
    torch.testing.assert_close(loss, expected)
    # the 2022 formula, AvgPool16(MaxPool16(sigmoid(seg))), agrees at 256 x 256
    reference = torch.nn.AvgPool2d(16)(torch.nn.MaxPool2d(16)(torch.sigmoid(seg))).flatten(1)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(reference, torch.sigmoid(cls)))
    loss.backward()
    assert float(cls.grad.abs().min()) > 0, "gradient into the classification head"
    nonzero = seg.grad[0, 0] != 0
    assert int(nonzero.sum()) == 256, "gradient into the segmentation head, one pixel (the maximum) per block"


def test_consistency_other_sizes_average_the_block_maxima():
    maxima = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]], dtype=torch.float64)
    seg = _logit(_block_map(maxima))  # 32 x 32
    cls = _logit(torch.tensor([[0.1]], dtype=torch.float64))
    torch.testing.assert_close(consistency_loss(cls, seg), torch.tensor((0.5 - 0.1) ** 2, dtype=torch.float64))
    # pool 8 on the same map: 16 blocks, 4 of them hold a maximum, the rest the background 0.05
    expected8 = ((0.2 + 0.4 + 0.6 + 0.8 + 12 * 0.05) / 16 - 0.1) ** 2
    assert math.isclose(float(consistency_loss(cls, seg, pool=8)), expected8, rel_tol=1e-9)


def test_consistency_errors_and_dict_form():
    with pytest.raises(ValueError, match="divisible by pool"):
        consistency_loss(torch.zeros(1, 1), torch.zeros(1, 1, 40, 32))
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        consistency_loss(torch.zeros(2), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="seg logits"):
        consistency_loss(torch.zeros(2, 1), torch.zeros(3, 1, 32, 32))
    cls, seg = torch.randn(2, 1), torch.randn(2, 1, 32, 32)
    term = ConsistencyLoss()
    torch.testing.assert_close(term({"cls": cls, "seg": seg, "rec": seg}, {"anything": 1}), consistency_loss(cls, seg))
    with pytest.raises(KeyError, match="'cls' and 'seg'"):
        term({"cls": cls})


def _plain_dice_bce(logits: np.ndarray, mask: np.ndarray, eps: float = 1e-7) -> float:
    """Batch-global binary soft Dice (smooth 0, zero without foreground) + mean BCE-with-logits, in numpy float64."""
    x, t = logits.astype(np.float64).ravel(), mask.astype(np.float64).ravel()
    p = 1.0 / (1.0 + np.exp(-x))
    dice = 1.0 - 2.0 * np.sum(p * t) / max(np.sum(p) + np.sum(t), eps)
    if t.sum() == 0:
        dice = 0.0
    bce = np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
    return dice + bce


def test_batch_dice_bce_matches_plain_formula():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    mask = torch.zeros(3, 1, 8, 8)
    mask[0, 0, 2:5, 2:6] = 1  # foreground in one sample only: batch Dice != mean of per-sample Dice
    loss = BatchDiceBCELoss()(logits, mask)
    assert math.isclose(float(loss), _plain_dice_bce(logits.numpy(), mask.numpy()), rel_tol=1e-5)
    weighted = BatchDiceBCELoss(dice_weight=0.0, bce_weight=2.0)(logits, mask)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask)
    torch.testing.assert_close(weighted, 2.0 * bce)
    # a bool / integer mask is accepted
    torch.testing.assert_close(BatchDiceBCELoss()(logits, mask.bool()), loss)


def test_batch_dice_bce_empty_batch_is_bce_only():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    empty = torch.zeros(2, 1, 8, 8)
    loss = BatchDiceBCELoss()(logits, empty)
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, empty))
    assert math.isclose(float(loss.detach()), _plain_dice_bce(logits.detach().numpy(), empty.numpy()), rel_tol=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_batch_dice_bce_errors():
    with pytest.raises(ValueError, match="same shape"):
        BatchDiceBCELoss()(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="weights"):
        BatchDiceBCELoss(dice_weight=-1)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    net = SMARTNet(width=0.125).train()
    x = torch.rand(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, 0, 8:20, 10:18] = 1
    target = {"cls": mask.flatten(1).amax(1, keepdim=True), "seg": mask, "rec": x}
    return net, x, target


#: the recipe as a bundle config writes it (genesis_monai.losses.smart_net docstring)
RECIPE = {
    "_target_": "genesis_monai.losses.MultiTaskLoss",
    "terms": {
        "classification": {"loss": {"_target_": "torch.nn.BCEWithLogitsLoss"}, "weight": 1.0, "pred_key": "cls",
                           "target_key": "cls"},
        "segmentation": {"loss": {"_target_": "genesis_monai.losses.BatchDiceBCELoss"}, "weight": 1.0,
                         "pred_key": "seg", "target_key": "seg"},
        "reconstruction": {"loss": {"_target_": "torch.nn.L1Loss"}, "weight": 1.0, "pred_key": "rec",
                           "target_key": "rec"},
        "consistency": {"loss": {"_target_": "genesis_monai.losses.ConsistencyLoss"}, "weight": 0.5,
                        "pred_key": None, "target_key": None},
    },
}


def test_multitask_recipe_from_config_equals_hand_sum_and_builder(batch):
    net, x, target = batch
    loss = ConfigParser({"loss": RECIPE}).get_parsed_content("loss")
    assert isinstance(loss, MultiTaskLoss)
    pred = net(x)
    total = loss(pred, target)
    by_hand = (torch.nn.functional.binary_cross_entropy_with_logits(pred["cls"], target["cls"])
               + BatchDiceBCELoss()(pred["seg"], target["seg"])
               + torch.nn.functional.l1_loss(pred["rec"], target["rec"])
               + 0.5 * consistency_loss(pred["cls"], pred["seg"]))
    torch.testing.assert_close(total, by_hand)
    assert sorted(loss.last_terms) == ["classification", "consistency", "reconstruction", "segmentation"]
    built = smart_net_loss("cls+seg+rec")
    assert built.describe()["terms"].keys() == loss.describe()["terms"].keys()
    assert built.weights == loss.weights == {"classification": 1.0, "segmentation": 1.0, "reconstruction": 1.0,
                                             "consistency": 0.5}
    torch.testing.assert_close(built(pred, target), total)
    total.backward()
    for name in ("classification_head.3.weight", "segmentation_head.0.weight", "reconstruction_head.0.weight"):
        assert float(dict(net.named_parameters())[name].grad.abs().sum()) > 0, name


def test_smart_net_loss_subsets_weights_and_errors():
    assert list(smart_net_loss("cls+seg").terms) == ["classification", "segmentation"]  # 2022: triple only
    assert list(smart_net_loss("cls+seg", consistency=True).terms) == ["classification", "segmentation",
                                                                       "consistency"]
    assert list(smart_net_loss("seg+rec").terms) == ["segmentation", "reconstruction"]
    assert list(smart_net_loss("cls+seg+rec", consistency=False).terms) == ["classification", "segmentation",
                                                                            "reconstruction"]
    assert smart_net_loss("cls", weights={"classification": 2.0, "consistency": 0.5}).weights == {"classification": 2.0}
    with pytest.raises(ValueError, match="unknown loss weight"):
        smart_net_loss("cls", weights={"clasification": 1.0})
    with pytest.raises(ValueError, match="needs the cls and seg heads"):
        smart_net_loss("cls+rec", consistency=True)
    with pytest.raises(ValueError, match="pretexts"):
        smart_net_loss("cls+foo")


def test_half_precision_inputs_reduce_in_float32():
    # 262,144 pixels of probability ~1: their sum overflows float16 (max 65504) unless reduced in float32
    logits = torch.full((1, 1, 512, 512), 8.0, dtype=torch.float16)
    mask = torch.ones(1, 1, 512, 512)
    half = BatchDiceBCELoss()(logits, mask)
    assert torch.isfinite(half) and half.dtype == torch.float32
    torch.testing.assert_close(half, BatchDiceBCELoss()(logits.float(), mask))
    cls = torch.zeros(1, 1, dtype=torch.float16)
    torch.testing.assert_close(consistency_loss(cls, logits), consistency_loss(cls.float(), logits.float()))
