"""Losses of the Genesis family: a named, weighted multi-task sum (each bundle's recipe is a list of terms)."""

from genesis_monai.losses.multi_task import LossTerm, MultiTaskLoss

__all__ = ["LossTerm", "MultiTaskLoss"]
