"""Concurrent spatial and channel squeeze-and-excitation (scSE, Roy et al. 2018) for 2D feature maps.

MONAI has only the channel half (``monai.networks.blocks.ChannelSELayer``); SMART-Net's decoders use
the concurrent form ``x * cSE(x) + x * sSE(x)``. Submodule names follow the common
segmentation-models layout (``cSE.1`` / ``cSE.3`` the two 1x1 convolutions, ``sSE.0`` the spatial
1x1 convolution), the layout SMART-Net's 2022 code was built on, so its state-dict keys match.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SCSEBlock"]


class SCSEBlock(nn.Module):
    """scSE attention: ``x * cSE(x) + x * sSE(x)``; (N, C, H, W) -> (N, C, H, W), same dtype.

    - ``cSE``: global average pool -> Conv1x1 C -> C // reduction -> ReLU -> Conv1x1 -> C -> sigmoid,
      a (N, C, 1, 1) gate per channel;
    - ``sSE``: Conv1x1 C -> 1 -> sigmoid, a (N, 1, H, W) gate per pixel.

    Args:
        channels: C, the channels of the input.
        reduction: squeeze ratio of the channel branch; the bottleneck has ``max(1, C // reduction)``
            channels (the max keeps narrow demo widths usable: 8 channels // 16 would be 0).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        channels, reduction = int(channels), int(reduction)
        if channels < 1 or reduction < 1:
            raise ValueError(f"SCSEBlock: channels and reduction must be >= 1, got channels={channels}, "
                             f"reduction={reduction}")
        squeezed = max(1, channels // reduction)
        self.channels = channels
        self.cSE = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, channels, 1),
            nn.Sigmoid(),
        )
        self.sSE = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)
