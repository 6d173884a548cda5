"""Losses of the Genesis family: a named, weighted multi-task sum (each bundle's recipe is a list of terms)."""

from genesis_monai.losses.multi_task import LossTerm, MultiTaskLoss

__all__ = ["LossTerm", "MultiTaskLoss"]

# SMART-Net: consistency between heads, batch-global Dice + BCE, and the multi-task recipe
from genesis_monai.losses.smart_net import (BatchDiceBCELoss, ConsistencyLoss, batch_dice_loss, consistency_loss,
                                            smart_net_loss)

__all__ += ["BatchDiceBCELoss", "ConsistencyLoss", "batch_dice_loss", "consistency_loss", "smart_net_loss"]
