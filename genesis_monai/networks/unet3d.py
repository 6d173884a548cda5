"""The Genesis 3D U-Net ("UNet3D") with the parameter names of the published checkpoints.

Topology (METHODS.md §1): four encoder stages ``down_tr64/128/256/512`` (two Conv-BN-act
units each, max-pooling after the first three), three decoder stages ``up_tr256/128/64``
(transposed conv x2, concatenation with the skip, two Conv-BN-act units) and a 1x1x1 head
``out_tr.final_conv`` followed by the output activation (sigmoid by default). 19,073,665
parameters at ``n_class=1``; the 106 state-dict keys equal those of ``Genesis_Chest_CT.pt``
once its ``module.`` prefix is stripped.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from genesis_monai.networks.norms import ContBatchNorm3d

__all__ = ["UNet3D", "LUConv", "check_spatial_size", "DIVISOR"]

#: every spatial size must be divisible by this (three 2x max-poolings)
DIVISOR = 8


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
    """Conv3d(k=3, pad=1) -> BatchNorm3d -> activation; attributes ``conv1``, ``bn1``, ``activation``."""

    def __init__(self, in_ch: int, out_ch: int, act: str = "relu", reference_batchnorm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, kernel_size=3, padding=1)
        self.bn1 = ContBatchNorm3d(out_ch) if reference_batchnorm else nn.BatchNorm3d(out_ch)
        self.activation = _activation(act, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


def _make_nconv(in_ch: int, depth: int, act: str, double_channel: bool, ref_bn: bool) -> nn.Sequential:
    if double_channel:  # decoder form: in -> 64*2^d -> 64*2^d
        mid = out = 64 * (2**depth)
    else:  # encoder form: in -> 32*2^d -> 64*2^d
        mid, out = 32 * (2**depth), 64 * (2**depth)
    return nn.Sequential(LUConv(in_ch, mid, act, ref_bn), LUConv(mid, out, act, ref_bn))


class DownTransition(nn.Module):
    def __init__(self, in_ch: int, depth: int, act: str, ref_bn: bool):
        super().__init__()
        self.ops = _make_nconv(in_ch, depth, act, False, ref_bn)
        self.pool = nn.MaxPool3d(2) if depth < 3 else nn.Identity()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        skip = self.ops(x)
        return self.pool(skip), skip


class UpTransition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, depth: int, act: str, ref_bn: bool):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_ch, out_ch, kernel_size=2, stride=2)
        self.ops = _make_nconv(in_ch + out_ch // 2, depth, act, True, ref_bn)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat((self.up_conv(x), skip), 1))


class OutputTransition(nn.Module):
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


def check_spatial_size(shape: List[int], divisor: int = DIVISOR) -> None:
    """Raise ``ValueError`` naming the first spatial axis not divisible by ``divisor``.

    Args:
        shape: full input shape (N, C, X, Y, Z).
    """
    if len(shape) != 5:
        raise ValueError(f"UNet3D expects input of shape (N, C, X, Y, Z), got {tuple(shape)}")
    for axis, size in zip("XYZ", shape[2:]):
        if size % divisor:
            lower = max(divisor, size // divisor * divisor)
            upper = (size // divisor + 1) * divisor
            raise ValueError(
                f"UNet3D: spatial size {size} along axis {axis} of input shape {tuple(shape)} is not divisible "
                f"by {divisor} (the network pools three times); nearest valid sizes: {lower} or {upper}"
            )


class UNet3D(nn.Module):
    """Genesis 3D U-Net.

    Args:
        in_channels: input channels (1 for the published weights).
        n_class: output channels of ``out_tr.final_conv``.
        act: hidden activation, ``"relu"`` (published), ``"prelu"`` or ``"elu"``.
        out_activation: ``"sigmoid"`` (published, inside the network), ``"softmax"`` or ``"none"`` (logits).
        reference_batchnorm: if True, BatchNorm uses batch statistics in eval mode too, as the
            reference ``ContBatchNorm3d`` does (needed to reproduce the reference's eval outputs
            with the published weights). Off by default: standard BatchNorm3d, which uses running
            statistics in eval mode.

    Input (N, in_channels, X, Y, Z) with X, Y, Z divisible by 8; output (N, n_class, X, Y, Z),
    in [0, 1] with the sigmoid output. ``forward_features(x)`` returns the deepest encoder feature
    ``out512`` of shape (N, 512, X/8, Y/8, Z/8).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_class: int = 1,
        act: str = "relu",
        out_activation: str = "sigmoid",
        reference_batchnorm: bool = False,
    ):
        super().__init__()
        self.down_tr64 = DownTransition(in_channels, 0, act, reference_batchnorm)
        self.down_tr128 = DownTransition(64, 1, act, reference_batchnorm)
        self.down_tr256 = DownTransition(128, 2, act, reference_batchnorm)
        self.down_tr512 = DownTransition(256, 3, act, reference_batchnorm)
        self.up_tr256 = UpTransition(512, 512, 2, act, reference_batchnorm)
        self.up_tr128 = UpTransition(256, 256, 1, act, reference_batchnorm)
        self.up_tr64 = UpTransition(128, 128, 0, act, reference_batchnorm)
        self.out_tr = OutputTransition(64, n_class, out_activation)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder pass: returns (skip64, skip128, skip256, out512)."""
        if not torch.jit.is_scripting():
            check_spatial_size(list(x.shape))
        out, skip64 = self.down_tr64(x)
        out, skip128 = self.down_tr128(out)
        out, skip256 = self.down_tr256(out)
        out512, _ = self.down_tr512(out)
        return skip64, skip128, skip256, out512

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest encoder feature ``out512``: (N, 512, X/8, Y/8, Z/8)."""
        return self.encode(x)[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip64, skip128, skip256, out512 = self.encode(x)
        out = self.up_tr256(out512, skip256)
        out = self.up_tr128(out, skip128)
        out = self.up_tr64(out, skip64)
        return self.out_tr(out)
