"""The Genesis 3D U-Net ("UNet3D") and its encoder, with the parameter names of the published checkpoints.

Topology (METHODS.md §1): four encoder stages ``down_tr64/128/256/512`` (two Conv-BN-act
units each, max-pooling after the first three), three decoder stages ``up_tr256/128/64``
(transposed conv x2, concatenation with the skip, two Conv-BN-act units) and a 1x1x1 head
``out_tr.final_conv`` followed by the output activation (sigmoid by default). At ``width=1.0``:
19,073,665 parameters at ``n_class=1``; the 106 state-dict keys equal those of
``Genesis_Chest_CT.pt`` once its ``module.`` prefix is stripped. Other widths scale every hidden
channel count (:mod:`genesis_monai.networks.width`) and keep the key names.

:class:`GenesisEncoder` is the encoder alone (what classification heads need); :class:`UNet3D`
extends it with the decoder, so both share the same ``down_tr*`` key names.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from genesis_monai.networks.blocks import DownTransition, LUConv, OutputTransition, UpTransition
from genesis_monai.networks.width import scale_channels, validate_width

__all__ = ["UNet3D", "GenesisEncoder", "LUConv", "check_spatial_size", "DIVISOR", "ENCODER_STAGES", "DECODER_STAGES"]

#: every spatial size must be divisible by this (three 2x max-poolings)
DIVISOR = 8

#: attribute names of the encoder / decoder stages (the first component of every state-dict key)
ENCODER_STAGES = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")
DECODER_STAGES = ("up_tr256", "up_tr128", "up_tr64", "out_tr")


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


class GenesisEncoder(nn.Module):
    """The Genesis UNet3D encoder: ``down_tr64 -> down_tr128 -> down_tr256 -> down_tr512``.

    Args:
        in_channels: input channels (1 for the published weights).
        act: hidden activation, ``"relu"`` (published), ``"prelu"`` or ``"elu"``.
        reference_batchnorm: BatchNorm with batch statistics in eval mode too (the reference
            ``ContBatchNorm3d``, see :class:`~genesis_monai.networks.norms.ContBatchNorm3d`).
        width: channel multiplier, 1.0 = published (32/64/128/256/512 channels); 0.25 gives
            8/16/32/64/128. Rounded to the nearest integer, see :mod:`genesis_monai.networks.width`.

    Attributes:
        width: the validated multiplier (float).
        feature_channels: channels of the deepest feature ``out512`` (512 at width 1.0); heads
            size themselves from it.

    Input (N, in_channels, X, Y, Z) with X, Y, Z divisible by 8. ``forward`` and
    ``forward_features`` return ``out512``: (N, feature_channels, X/8, Y/8, Z/8).
    """

    def __init__(self, in_channels: int = 1, act: str = "relu", reference_batchnorm: bool = False, width: float = 1.0):
        super().__init__()
        # constructor arguments kept under their own names: provenance reads them back from the instance
        self.in_channels = in_channels
        self.act = act
        self.reference_batchnorm = reference_batchnorm
        self.width = validate_width(width)
        c = {ref: scale_channels(ref, self.width) for ref in (32, 64, 128, 256, 512)}
        self.feature_channels = c[512]
        # stage d maps its input to 32*2^d then 64*2^d channels (the reference's encoder _make_nConv)
        self.down_tr64 = DownTransition(in_channels, c[32], c[64], True, act, reference_batchnorm)
        self.down_tr128 = DownTransition(c[64], c[64], c[128], True, act, reference_batchnorm)
        self.down_tr256 = DownTransition(c[128], c[128], c[256], True, act, reference_batchnorm)
        # the deepest stage does not pool (three poolings in all, hence DIVISOR = 8)
        self.down_tr512 = DownTransition(c[256], c[256], c[512], False, act, reference_batchnorm)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder pass: (skip64, skip128, skip256, out512) at full, 1/2, 1/4 and 1/8 resolution."""
        if not torch.jit.is_scripting():
            check_spatial_size(list(x.shape))
        out, skip64 = self.down_tr64(x)
        out, skip128 = self.down_tr128(out)
        out, skip256 = self.down_tr256(out)
        out512, _ = self.down_tr512(out)
        return skip64, skip128, skip256, out512

    @torch.jit.export
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest encoder feature ``out512``: (N, feature_channels, X/8, Y/8, Z/8)."""
        return self.encode(x)[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class UNet3D(GenesisEncoder):
    """Genesis 3D U-Net: :class:`GenesisEncoder` plus the decoder ``up_tr256/128/64`` and ``out_tr``.

    Args:
        in_channels: input channels (1 for the published weights).
        n_class: output channels of ``out_tr.final_conv`` (not scaled by ``width``).
        act: hidden activation, ``"relu"`` (published), ``"prelu"`` or ``"elu"``.
        out_activation: ``"sigmoid"`` (published, inside the network), ``"softmax"`` or ``"none"`` (logits).
        reference_batchnorm: if True, BatchNorm uses batch statistics in eval mode too, as the
            reference ``ContBatchNorm3d`` does (needed to reproduce the reference's eval outputs
            with the published weights). Off by default: standard BatchNorm3d, which uses running
            statistics in eval mode.
        width: channel multiplier (1.0 = published; 0.25 = demo scale, ~1/16 of the parameters
            and FLOPs, same key names). Settable from a bundle config as ``network_def#width``.

    Input (N, in_channels, X, Y, Z) with X, Y, Z divisible by 8; output (N, n_class, X, Y, Z),
    in [0, 1] with the sigmoid output. ``forward_features(x)`` returns the deepest encoder feature
    ``out512`` of shape (N, feature_channels, X/8, Y/8, Z/8), ``feature_channels`` = 512 at width 1.0.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_class: int = 1,
        act: str = "relu",
        out_activation: str = "sigmoid",
        reference_batchnorm: bool = False,
        width: float = 1.0,
    ):
        super().__init__(in_channels=in_channels, act=act, reference_batchnorm=reference_batchnorm, width=width)
        self.n_class = n_class
        self.out_activation = out_activation
        c = {ref: scale_channels(ref, self.width) for ref in (64, 128, 256, 512)}
        # decoder stage d: upsample, concat the depth-d skip (64*2^d channels), map to 64*2^d channels
        self.up_tr256 = UpTransition(c[512], c[256], c[256], act, reference_batchnorm)
        self.up_tr128 = UpTransition(c[256], c[128], c[128], act, reference_batchnorm)
        self.up_tr64 = UpTransition(c[128], c[64], c[64], act, reference_batchnorm)
        self.out_tr = OutputTransition(c[64], n_class, out_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip64, skip128, skip256, out512 = self.encode(x)
        out = self.up_tr256(out512, skip256)
        out = self.up_tr128(out, skip128)
        out = self.up_tr64(out, skip64)
        return self.out_tr(out)
