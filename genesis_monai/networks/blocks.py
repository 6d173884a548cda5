"""Building blocks of the Genesis 3D U-Net, with the attribute names of the published checkpoints.

Every block takes explicit channel counts, so one implementation serves every ``width``
(see :mod:`genesis_monai.networks.width`); the names (``ops``, ``conv1``, ``bn1``, ``up_conv``,
``final_conv``) are what make the published state dicts load key for key.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from genesis_monai.networks.norms import ContBatchNorm3d

__all__ = ["LUConv", "make_nconv", "DownTransition", "UpTransition", "OutputTransition"]


def _activation(name: str, channels: int) -> nn.Module:
    name = name.lower()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "elu":
        return nn.ELU(inplace=True)
    raise ValueError(f"act must be one of 'relu', 'prelu', 'elu', got {name!r}")


class LUConv(nn.Module):
    """Conv3d(k=3, pad=1) -> BatchNorm3d -> activation; attributes ``conv1``, ``bn1``, ``activation``.

    (N, in_ch, X, Y, Z) -> (N, out_ch, X, Y, Z).
    """

    def __init__(self, in_ch: int, out_ch: int, act: str = "relu", reference_batchnorm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, kernel_size=3, padding=1)
        self.bn1 = ContBatchNorm3d(out_ch) if reference_batchnorm else nn.BatchNorm3d(out_ch)
        self.activation = _activation(act, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


def make_nconv(in_ch: int, mid_ch: int, out_ch: int, act: str, ref_bn: bool) -> nn.Sequential:
    """Two LUConvs ``in_ch -> mid_ch -> out_ch`` (the reference ``_make_nConv``), keys ``0.*`` and ``1.*``."""
    return nn.Sequential(LUConv(in_ch, mid_ch, act, ref_bn), LUConv(mid_ch, out_ch, act, ref_bn))


class DownTransition(nn.Module):
    """Encoder stage: ``ops`` (two LUConvs) then a 2x max-pool (none at the deepest stage).

    (N, in_ch, X, Y, Z) -> (pooled (N, out_ch, X/2, Y/2, Z/2) or unpooled, skip (N, out_ch, X, Y, Z)).
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, pool: bool, act: str, ref_bn: bool):
        super().__init__()
        self.ops = make_nconv(in_ch, mid_ch, out_ch, act, ref_bn)
        self.pool = nn.MaxPool3d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        skip = self.ops(x)
        return self.pool(skip), skip


class UpTransition(nn.Module):
    """Decoder stage: ConvTranspose3d(in_ch -> in_ch, k=2, s=2), concat with the skip, two LUConvs.

    x (N, in_ch, X, Y, Z), skip (N, skip_ch, 2X, 2Y, 2Z) -> (N, out_ch, 2X, 2Y, 2Z).
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, act: str, ref_bn: bool):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_ch, in_ch, kernel_size=2, stride=2)
        # the reference writes the concatenated width as in_ch + in_ch // 2; at width 1.0 that equals
        # in_ch + skip_ch, but with rounded widths only the explicit sum is right
        self.ops = make_nconv(in_ch + skip_ch, out_ch, out_ch, act, ref_bn)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat((self.up_conv(x), skip), 1))


class OutputTransition(nn.Module):
    """1x1x1 ``final_conv`` then the output activation: (N, in_ch, X, Y, Z) -> (N, n_class, X, Y, Z)."""

    def __init__(self, in_ch: int, n_class: int, out_activation: str):
        super().__init__()
        self.final_conv = nn.Conv3d(in_ch, n_class, kernel_size=1)
        if out_activation == "sigmoid":
            self.act: nn.Module = nn.Sigmoid()
        elif out_activation == "softmax":
            self.act = nn.Softmax(dim=1)
        elif out_activation in ("none", "logits"):
            self.act = nn.Identity()
        else:
            raise ValueError(f"out_activation must be 'sigmoid', 'softmax' or 'none', got {out_activation!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.final_conv(x))
