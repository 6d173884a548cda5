"""Classification fine-tuning network on the Genesis encoder (the reference "TargetNet")."""

from __future__ import annotations

import torch
from torch import nn

from genesis_monai.networks.unet3d import GenesisEncoder
from genesis_monai.networks.width import scale_channels

__all__ = ["GenesisClassifier"]

#: hidden units of the reference head (Linear(512, 1024)) at width 1.0
_REFERENCE_HIDDEN = 1024


class GenesisClassifier(nn.Module):
    """Genesis encoder -> global average pool -> Linear(feature_channels, hidden) -> ReLU -> Linear(hidden, n_class).

    Parameter names follow the reference fine-tuning code: the encoder lives in ``base_model``
    (``base_model.down_tr64`` ... ``base_model.down_tr512``), the head is ``dense_1``/``dense_2``.
    Only the encoder is built: the reference also held (and ran) the UNet3D decoder, whose
    parameters never get a gradient, which breaks DDP unless ``find_unused_parameters=True``.
    A full UNet3D checkpoint still loads through :func:`genesis_monai.weights.load_pretrained_weights`
    (its decoder tensors are reported as expected extras).

    Args:
        n_class: number of outputs.
        in_channels, act, reference_batchnorm: passed to :class:`GenesisEncoder`.
        width: channel multiplier of the encoder; the head follows it: ``dense_1`` is
            Linear(feature_channels, hidden) with feature_channels = 512 * width and
            hidden = 1024 * width (rounded), i.e. Linear(512, 1024) at width 1.0 as in the reference.

    Input (N, in_channels, X, Y, Z), sizes divisible by 8. Output: logits (N, n_class); apply a
    sigmoid (or use ``BCEWithLogitsLoss``) as the reference's BCE on ``sigmoid(output)`` does.
    """

    def __init__(
        self,
        n_class: int = 1,
        in_channels: int = 1,
        act: str = "relu",
        reference_batchnorm: bool = False,
        width: float = 1.0,
    ):
        super().__init__()
        self.base_model = GenesisEncoder(
            in_channels=in_channels, act=act, reference_batchnorm=reference_batchnorm, width=width
        )
        # constructor arguments under their own names (provenance reads them back from the instance)
        self.n_class, self.in_channels, self.act, self.reference_batchnorm = n_class, in_channels, act, reference_batchnorm
        self.width = self.base_model.width
        self.feature_channels = self.base_model.feature_channels
        hidden = scale_channels(_REFERENCE_HIDDEN, self.width)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dense_1 = nn.Linear(self.feature_channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.dense_2 = nn.Linear(hidden, n_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.pool(self.base_model.forward_features(x)).flatten(1)
        return self.dense_2(self.relu(self.dense_1(feat)))
