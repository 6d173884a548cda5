"""Classification fine-tuning network on the Genesis encoder (the reference "TargetNet")."""

from __future__ import annotations

import torch
from torch import nn

from genesis_monai.networks.unet3d import UNet3D

__all__ = ["GenesisClassifier"]


class GenesisClassifier(nn.Module):
    """Genesis encoder -> global average pool -> Linear(512, 1024) -> ReLU -> Linear(1024, n_class).

    Parameter names follow the reference fine-tuning code: the UNet3D lives in ``base_model``
    (so a pretrained UNet3D state dict loads into ``classifier.base_model``), the head is
    ``dense_1``/``dense_2``. Only the encoder runs (the reference also ran the unused decoder).

    Args:
        n_class: number of outputs.
        in_channels, act, reference_batchnorm: passed to :class:`UNet3D`.

    Input (N, in_channels, X, Y, Z), sizes divisible by 8. Output: logits (N, n_class); apply a
    sigmoid (or use ``BCEWithLogitsLoss``) as the reference's BCE on ``sigmoid(output)`` does.
    """

    def __init__(self, n_class: int = 1, in_channels: int = 1, act: str = "relu", reference_batchnorm: bool = False):
        super().__init__()
        self.base_model = UNet3D(in_channels=in_channels, n_class=1, act=act, reference_batchnorm=reference_batchnorm)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dense_1 = nn.Linear(512, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dense_2 = nn.Linear(1024, n_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.pool(self.base_model.forward_features(x)).flatten(1)
        return self.dense_2(self.relu(self.dense_1(feat)))
