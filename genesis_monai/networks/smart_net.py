"""SMART-Net (Kyung et al., Medical Image Analysis 2022): a 2D ResNet-50 with classification, segmentation
and reconstruction heads, as in the paper-era (mid-2022) reference code.

Topology (METHODS.md §3, research/upstream_adam_smartnet.md §B1), for a (B, 1, 256, 256) slice:

- ``encoder``: MONAI's 2D ResNet-50 (Bottleneck, layers 3/4/6/3) with a 7x7 **stride-1** first
  convolution and the max-pool kept, so the total stride is 16; no fc / avgpool. Feature maps
  (:meth:`SMARTNet.encode`): stem (after conv1/bn1/relu, 64 ch, H), layer1 (256, H/2), layer2
  (512, H/4), layer3 (1024, H/8), layer4 (2048, H/16) at width 1.0.
- ``classification_head``: global average pool -> flatten -> Dropout(0.5) -> Linear(2048, 1).
- ``seg_decoder``: a U-Net decoder over the skips layer3, layer2, layer1, stem; each of the 4 blocks
  upsamples x2 (nearest), concatenates the skip and applies Conv3x3-BN-ReLU twice (256/128/64/32
  channels, no attention, as in the 2022 code); a last block (no upsampling, no skip) is scSE ->
  Conv3x3-BN-ReLU x2 to 16 channels -> scSE. ``segmentation_head``: Conv3x3 16 -> 1 (logits).
- ``rec_decoder``: from layer4 only, no skips; each of the 4 blocks is Conv1x1 (C -> 4C) +
  PixelShuffle(2) (so C channels at twice the size) then Conv3x3-ReLU twice WITHOUT BatchNorm to
  256/128/64/32 channels; the same last block as the segmentation decoder; ``reconstruction_head``:
  Conv3x3 16 -> 1, linear (the target is the input slice, L1).

SMART-Net's authors published no weights. The state-dict keys are those of the 2022 code
(top-level ``encoder.``, ``classification_head.``, ``seg_decoder.``, ``segmentation_head.``,
``rec_decoder.``, ``reconstruction_head.``; inside, the segmentation-models names it used, e.g.
``encoder.layer1.0.conv1.weight`` (torchvision names), ``classification_head.3.weight``,
``seg_decoder.blocks.0.conv1.0.weight`` (conv) / ``.conv1.1.*`` (BN),
``seg_decoder.last_block.attention1.attention.cSE.1.weight``,
``rec_decoder.blocks.0.upsample.upsample.0.weight``, ``segmentation_head.0.weight``), so a checkpoint
trained with that code loads key for key (after unwrapping ``model_state_dict`` / ``module.``).

``width`` scales every hidden channel count (demo scale, e.g. 0.125); the encoder follows MONAI's
``widen_factor`` (``int(64 * width)`` planes), the decoders
:func:`~genesis_monai.networks.width.scale_channels` (rounded, at least 1). Key names do not change.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet, ResNetBottleneck
from torch import nn

from genesis_monai.networks.scse import SCSEBlock
from genesis_monai.networks.width import scale_channels, validate_width

__all__ = [
    "SMARTNet",
    "SMARTNetSegmentation",
    "SMARTNetEncoder",
    "SegmentationDecoder",
    "ReconstructionDecoder",
    "STRIDE",
    "check_slice_size",
    "init_decoder",
    "init_head",
]

#: the encoder's total stride: H and W must be divisible by it
STRIDE = 16

#: the SMART-Net 2022 decoders' channels at width 1.0 (one entry per x2 block)
DECODER_CHANNELS = (256, 128, 64, 32)


def check_slice_size(shape: List[int], in_channels: int, name: str = "SMARTNet") -> None:
    """Raise ``ValueError`` unless ``shape`` is (B, in_channels, H, W) with H, W divisible by :data:`STRIDE`."""
    if len(shape) != 4:
        raise ValueError(f"{name} expects a batch of 2D slices (B, C, H, W), got shape {tuple(shape)}")
    if shape[1] != in_channels:
        raise ValueError(f"{name} expects {in_channels} input channel(s), got shape {tuple(shape)}")
    for axis, size in zip("HW", shape[2:]):
        if size % STRIDE or size == 0:
            lower = max(STRIDE, size // STRIDE * STRIDE)
            raise ValueError(f"{name}: {axis} = {size} of input shape {tuple(shape)} is not divisible by {STRIDE} "
                             f"(the encoder's total stride); nearest valid sizes: {lower} or "
                             f"{(size // STRIDE + 1) * STRIDE}")


def init_decoder(module: nn.Module) -> None:
    """The 2022 code's decoder init: conv kaiming-uniform (fan_in, relu), bias 0; BN 1/0; Linear xavier-uniform."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_head(module: nn.Module) -> None:
    """The 2022 code's head init: xavier-uniform weights, zero bias for every Linear / Conv."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SMARTNetEncoder(ResNet):
    """MONAI 2D ResNet-50 with a 7x7 stride-1 stem (total stride 16) that returns its 5 feature maps.

    (B, in_channels, H, W) -> [stem (64w, H), layer1 (256w, H/2), layer2 (512w, H/4), layer3 (1024w, H/8),
    layer4 (2048w, H/16)] (``w`` = width, channel counts ``int(64 * w)`` times 1/4/8/16/32). State-dict
    keys are torchvision's ResNet-50 names without ``fc`` (``conv1.weight``, ``bn1.*``,
    ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight`` without a bias, ...).

    Attributes:
        out_channels: the 5 feature maps' channel counts.
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0):
        width = validate_width(width)
        super().__init__(block=ResNetBottleneck, layers=[3, 4, 6, 3], block_inplanes=[64, 128, 256, 512],
                         spatial_dims=2, n_input_channels=int(in_channels), conv1_t_size=7, conv1_t_stride=1,
                         widen_factor=width, feed_forward=False, bias_downsample=False)
        # no classifier here: the heads pool what they need; keeps the keys torchvision's minus fc
        del self.avgpool
        self.in_channels = int(in_channels)
        self.width = width
        self.out_channels = [self.conv1.out_channels] + [
            int(layer[-1].conv3.out_channels) for layer in (self.layer1, self.layer2, self.layer3, self.layer4)]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:  # type: ignore[override]
        stem = self.act(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]


def _conv_relu(in_channels: int, out_channels: int, batchnorm: bool) -> nn.Sequential:
    # Conv3x3 (bias only without BN) -> BN or Identity -> ReLU: index 0 / 1 as in the 2022 code's keys
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batchnorm),
                         nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity(), nn.ReLU(inplace=True))


class _Attention(nn.Module):
    """Holds the scSE block under ``attention`` (the 2022 code's wrapper name, kept for its keys)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = SCSEBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class LastDecoderBlock(nn.Module):
    """scSE -> Conv3x3-BN-ReLU -> Conv3x3-BN-ReLU -> scSE, at the input resolution (no upsampling, no skip)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.attention1 = _Attention(in_channels)
        self.conv1 = _conv_relu(in_channels, out_channels, True)
        self.conv2 = _conv_relu(out_channels, out_channels, True)
        self.attention2 = _Attention(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention2(self.conv2(self.conv1(self.attention1(x))))


class UNetDecoderBlock(nn.Module):
    """Nearest x2 upsample -> concat skip -> Conv3x3-BN-ReLU x2.

    (B, in, h, w) and skip (B, skip, 2h, 2w) -> (B, out, 2h, 2w).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = _conv_relu(in_channels + skip_channels, out_channels, True)
        self.conv2 = _conv_relu(out_channels, out_channels, True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1)
        return self.conv2(self.conv1(x))


class _PixelShuffleUp(nn.Module):
    """Conv1x1 C -> 4C + PixelShuffle(2): (B, C, h, w) -> (B, C, 2h, 2w); ``upsample.0`` is the conv (2022 keys)."""

    def __init__(self, channels: int):
        super().__init__()
        self.upsample = nn.Sequential(nn.Conv2d(channels, 4 * channels, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


class PixelShuffleDecoderBlock(nn.Module):
    """PixelShuffle x2 -> Conv3x3-ReLU x2 without BN: (B, in, h, w) -> (B, out, 2h, 2w)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = _PixelShuffleUp(in_channels)
        self.conv1 = _conv_relu(in_channels, out_channels, False)
        self.conv2 = _conv_relu(out_channels, out_channels, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.upsample(x)))


def _decoder_widths(decoder_channels: Sequence[int], last_channels: int, width: float) -> Tuple[List[int], int]:
    channels = [int(c) for c in decoder_channels]
    if len(channels) != 4 or min(channels) < 1:
        raise ValueError(f"decoder_channels must be 4 positive channel counts (one per x2 block of the stride-16 "
                         f"encoder), got {tuple(decoder_channels)}")
    if int(last_channels) < 1:
        raise ValueError(f"last_channels must be >= 1, got {last_channels}")
    return [scale_channels(c, width) for c in channels], scale_channels(int(last_channels), width)


class SegmentationDecoder(nn.Module):
    """U-Net decoder over the encoder maps: ``blocks.0..3`` (skips layer3, layer2, layer1, stem) + ``last_block``.

    ``forward(features)`` takes :meth:`SMARTNetEncoder.forward`'s 5 maps and returns
    (B, out_channels, H, W) at the input resolution (``out_channels`` = last_channels, 16 at width 1.0).
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int] = DECODER_CHANNELS,
                 last_channels: int = 16, width: float = 1.0):
        super().__init__()
        dec, last = _decoder_widths(decoder_channels, last_channels, width)
        enc = [int(c) for c in encoder_channels]  # stem, layer1..layer4
        ins = [enc[4]] + dec[:-1]
        skips = [enc[3], enc[2], enc[1], enc[0]]
        self.blocks = nn.ModuleList([UNetDecoderBlock(i, s, o) for i, s, o in zip(ins, skips, dec)])
        self.last_block = LastDecoderBlock(dec[-1], last)
        self.out_channels = last

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = features[4]
        for i, block in enumerate(self.blocks):
            x = block(x, features[3 - i])
        return self.last_block(x)


class ReconstructionDecoder(nn.Module):
    """Skip-less decoder from layer4: ``blocks.0..3`` (PixelShuffle x2, no BN) + ``last_block``.

    ``forward(x)``: (B, C4, H/16, W/16) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, decoder_channels: Sequence[int] = DECODER_CHANNELS, last_channels: int = 16,
                 width: float = 1.0):
        super().__init__()
        dec, last = _decoder_widths(decoder_channels, last_channels, width)
        ins = [int(in_channels)] + dec[:-1]
        self.blocks = nn.ModuleList([PixelShuffleDecoderBlock(i, o) for i, o in zip(ins, dec)])
        self.last_block = LastDecoderBlock(dec[-1], last)
        self.out_channels = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.last_block(x)


#: the three pretext heads of SMART-Net, in the order the paper names them
PRETEXTS = ("cls", "seg", "rec")


def parse_pretexts(pretexts: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"cls+seg+rec"`` / ``["cls", "seg"]`` -> the pretexts in canonical order; ValueError naming what is wrong."""
    items = [p.strip() for p in pretexts.split("+")] if isinstance(pretexts, str) else [str(p).strip() for p in pretexts]
    unknown = [p for p in items if p not in PRETEXTS]
    if unknown or not items or len(set(items)) != len(items):
        raise ValueError(f"pretexts {pretexts!r}: expected a non-empty '+'-joined set of {list(PRETEXTS)} without "
                         f"repeats, e.g. 'cls+seg+rec' (unknown: {unknown})")
    return tuple(p for p in PRETEXTS if p in items)



class SMARTNet(nn.Module):
    """SMART-Net upstream network: shared 2D ResNet-50 encoder + the heads named in ``pretexts``.

    Args:
        in_channels: input channels (1: one windowed CT slice).
        pretexts: the heads to build, ``"cls+seg+rec"`` (SMART-Net), any ``+``-joined subset
            (``"cls"``, ``"seg+rec"``, ...) or a list. Heads not named are not built (no parameters).
            The consistency term needs cls and seg; it lives in the loss
            (:func:`genesis_monai.losses.smart_net_loss`).
        width: channel multiplier (1.0 = the published network; e.g. 0.125 for CPU demos).
        decoder_channels: the 4 decoder blocks' channels at width 1.0.
        last_channels: channels of the decoders' last block at width 1.0 (16).
        dropout: dropout before the classification Linear.

    ``forward(x)``: x (B, in_channels, H, W) float, H and W divisible by 16 -> dict with the enabled keys
    among ``"cls"`` (B, 1) logits, ``"seg"`` (B, 1, H, W) logits, ``"rec"`` (B, 1, H, W) reconstruction
    (linear; the target is the input in [0, 1]). Scriptable with ``torch.jit.script``.
    """

    def __init__(self, in_channels: int = 1, pretexts: Union[str, Sequence[str]] = "cls+seg+rec", width: float = 1.0,
                 decoder_channels: Sequence[int] = DECODER_CHANNELS, last_channels: int = 16, dropout: float = 0.5):
        super().__init__()
        self.pretexts = parse_pretexts(pretexts)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"SMARTNet: dropout must be in [0, 1), got {dropout}")
        self.in_channels = int(in_channels)
        self.width = validate_width(width)
        self.decoder_channels = tuple(int(c) for c in decoder_channels)
        self.last_channels = int(last_channels)
        self.dropout = float(dropout)
        self.encoder = SMARTNetEncoder(self.in_channels, self.width)
        enc = self.encoder.out_channels
        self.classification_head = None
        self.seg_decoder = None
        self.segmentation_head = None
        self.rec_decoder = None
        self.reconstruction_head = None
        if "cls" in self.pretexts:
            # index 3 = the Linear, as the 2022 code's keys (classification_head.3.weight)
            self.classification_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(self.dropout),
                                                     nn.Linear(enc[4], 1))
            init_head(self.classification_head)
        if "seg" in self.pretexts:
            self.seg_decoder = SegmentationDecoder(enc, self.decoder_channels, self.last_channels, self.width)
            self.segmentation_head = nn.Sequential(nn.Conv2d(self.seg_decoder.out_channels, 1, 3, padding=1))
            init_decoder(self.seg_decoder)
            init_head(self.segmentation_head)
        if "rec" in self.pretexts:
            self.rec_decoder = ReconstructionDecoder(enc[4], self.decoder_channels, self.last_channels, self.width)
            self.reconstruction_head = nn.Sequential(nn.Conv2d(self.rec_decoder.out_channels, 1, 3, padding=1))
            init_decoder(self.rec_decoder)
            init_head(self.reconstruction_head)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The encoder's 5 feature maps: stem (H), layer1 (H/2), layer2 (H/4), layer3 (H/8), layer4 (H/16)."""
        if not torch.jit.is_scripting():
            check_slice_size(list(x.shape), self.in_channels, type(self).__name__)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.encode(x)
        out: Dict[str, torch.Tensor] = {}
        if self.classification_head is not None:
            out["cls"] = self.classification_head(features[4])
        if self.seg_decoder is not None and self.segmentation_head is not None:
            out["seg"] = self.segmentation_head(self.seg_decoder(features))
        if self.rec_decoder is not None and self.reconstruction_head is not None:
            out["rec"] = self.reconstruction_head(self.rec_decoder(features[4]))
        return out


class SMARTNetSegmentation(SMARTNet):
    """A :class:`SMARTNet` whose ``forward`` returns ONE tensor: sigmoid(seg), (B, 1, H, W) in [0, 1].

    Same arguments and the same state-dict keys as :class:`SMARTNet` (it IS one, with another
    forward), so a trained ``cls+seg+rec`` checkpoint loads strictly. Only the encoder and the
    segmentation branch run. This is the form MONAI's ``verify_net_in_out``, inference, MONAI Label
    and the TorchScript export (``ckpt_export``) need. ``pretexts`` must include ``"seg"``.
    """

    def __init__(self, in_channels: int = 1, pretexts: Union[str, Sequence[str]] = "cls+seg+rec", width: float = 1.0,
                 decoder_channels: Sequence[int] = DECODER_CHANNELS, last_channels: int = 16, dropout: float = 0.5):
        super().__init__(in_channels=in_channels, pretexts=pretexts, width=width, decoder_channels=decoder_channels,
                         last_channels=last_channels, dropout=dropout)
        if "seg" not in self.pretexts:
            raise ValueError(f"SMARTNetSegmentation needs the segmentation head: pretexts {'+'.join(self.pretexts)!r} "
                             "has no 'seg'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        features = self.encode(x)
        if self.seg_decoder is None or self.segmentation_head is None:  # for TorchScript's type refinement
            raise RuntimeError("SMARTNetSegmentation has no segmentation head")
        return torch.sigmoid(self.segmentation_head(self.seg_decoder(features)))
