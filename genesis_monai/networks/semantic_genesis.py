"""The Semantic Genesis / TransVW networks: the Genesis UNet3D with a pattern-classification head.

The reference ``YNet3D`` (research/upstream_genesis.md §1.4) is the UNet3D plus ``clc_out`` on the
deepest encoder feature ``out512``: Conv3d(512 -> 1024, k=3, pad=1) -> BatchNorm3d -> ReLU ->
AdaptiveAvgPool3d(1) -> Linear(1024, C) -> softmax. Here the head returns LOGITS: the reference
trains with NLL on ``log(softmax(.))``, which equals ``CrossEntropyLoss`` on logits, and logits keep
the loss numerically stable. Parameter names are the reference's (``clc_out.conv1``,
``clc_out.bn1``, ``clc_out.fc1``), so published checkpoints load strictly (see
:func:`genesis_monai.weights.import_checkpoint` with ``keep_head=True``).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from genesis_monai.networks.norms import ContBatchNorm3d
from genesis_monai.networks.unet3d import GenesisEncoder, UNet3D
from genesis_monai.networks.width import scale_channels

__all__ = ["PatternClassificationHead", "SemanticGenesisNet", "SemanticGenesisClassifier", "HEAD_PREFIX"]

#: first component of the head's state-dict keys
HEAD_PREFIX = "clc_out"

#: channels of the head's convolution at width 1.0 (Conv3d(512, 1024))
_REFERENCE_HEAD_CHANNELS = 1024


class PatternClassificationHead(nn.Module):
    """``clc_out``: Conv3d(k=3, pad=1) -> BatchNorm3d -> ReLU -> global average pool -> Linear -> logits.

    (N, in_channels, X', Y', Z') -> (N, n_classes). ``hidden`` is 1024 at width 1.0.
    """

    def __init__(self, in_channels: int, hidden: int, n_classes: int, reference_batchnorm: bool = False):
        super().__init__()
        if int(n_classes) < 2:
            raise ValueError(f"PatternClassificationHead: n_classes (cls_classes) must be >= 2, got {n_classes}")
        self.conv1 = nn.Conv3d(in_channels, hidden, kernel_size=3, padding=1)
        self.bn1 = ContBatchNorm3d(hidden) if reference_batchnorm else nn.BatchNorm3d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Linear(hidden, int(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.pool(self.relu(self.bn1(self.conv1(x)))).flatten(1))


def _head(encoder: GenesisEncoder, cls_classes: int, reference_batchnorm: bool) -> PatternClassificationHead:
    return PatternClassificationHead(encoder.feature_channels, scale_channels(_REFERENCE_HEAD_CHANNELS, encoder.width),
                                     cls_classes, reference_batchnorm)


class SemanticGenesisNet(UNet3D):
    """Genesis UNet3D + ``clc_out`` (the reference ``YNet3D``): restoration and pattern classification.

    Args:
        in_channels, n_class, act, out_activation, reference_batchnorm, width: as :class:`UNet3D`.
        cls_classes: number of discovered pattern classes C (44 for Semantic Genesis, 50 in the
            published TransVW data).

    Input (N, in_channels, X, Y, Z), sizes divisible by 8. ``forward`` returns the tuple
    ``(restoration, class_logits)``: restoration (N, n_class, X, Y, Z) exactly as UNet3D returns it
    (in [0, 1] with the default sigmoid), class logits (N, cls_classes). At width 1.0 the state dict
    holds the 106 UNet3D keys plus 9 ``clc_out.*`` keys; fine-tuning loads the UNet3D part
    (``load_pretrained_weights(UNet3D(), path, method="semantic_genesis")`` drops the head).
    """

    def __init__(self, in_channels: int = 1, n_class: int = 1, cls_classes: int = 44, act: str = "relu",
                 out_activation: str = "sigmoid", reference_batchnorm: bool = False, width: float = 1.0):
        super().__init__(in_channels=in_channels, n_class=n_class, act=act, out_activation=out_activation,
                         reference_batchnorm=reference_batchnorm, width=width)
        self.cls_classes = int(cls_classes)
        self.clc_out = _head(self, self.cls_classes, reference_batchnorm)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        skip64, skip128, skip256, out512 = self.encode(x)
        out = self.up_tr256(out512, skip256)
        out = self.up_tr128(out, skip128)
        out = self.up_tr64(out, skip64)
        return self.out_tr(out), self.clc_out(out512)


class SemanticGenesisClassifier(GenesisEncoder):
    """Encoder + ``clc_out`` only (the reference ``ClassificationNet3D``, ``--exp en``): class logits.

    65 state-dict keys at width 1.0 (56 encoder + 9 head), the same names as in
    :class:`SemanticGenesisNet`, so its checkpoint seeds the full network (and vice versa, minus
    the decoder). Input (N, in_channels, X, Y, Z), sizes divisible by 8; output (N, cls_classes).
    """

    def __init__(self, in_channels: int = 1, cls_classes: int = 44, act: str = "relu",
                 reference_batchnorm: bool = False, width: float = 1.0):
        super().__init__(in_channels=in_channels, act=act, reference_batchnorm=reference_batchnorm, width=width)
        self.cls_classes = int(cls_classes)
        self.clc_out = _head(self, self.cls_classes, reference_batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clc_out(self.forward_features(x))
