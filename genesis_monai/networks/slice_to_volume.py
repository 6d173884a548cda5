"""SMART-Net's 2D -> 3D downstream networks: a slice-feature BiLSTM classifier and a slice-stack 3D segmenter.

Both run the upstream network's 2D parts on every slice of a volume and add a small 3D operator
(research/upstream_adam_smartnet.md §B2, the 2022 code):

- :class:`SMARTNetVolumeClassifier` (SMART-Net-CLS): per slice ``encoder`` -> layer4 -> global average
  pool (2048-d) -> a sequence over depth -> bidirectional 2-layer LSTM (hidden 512), packed with the
  true depths -> the last layer's final backward and forward hidden states (1024) -> Linear 512 ->
  ReLU -> Dropout -> Linear 1: (B, 1) logits.
- :class:`SMARTNetVolumeSegmenter` (SMART-Net-SEG): per slice ``encoder`` + ``seg_decoder`` (16-channel
  full-resolution maps), stacked along depth -> [Conv3d 3x3x3 -> BN3d -> ReLU] x2 -> Conv3d 3x3x3 -> 1:
  (B, 1, H, W, D) logits.

Volumes are (B, C, H, W, D), depth last (MONAI's layout after ``Orientationd``); a batch of volumes
padded at the END of D by the collate function comes with ``depths`` (B,), the true depths. Valid
slices are gathered into one (N, C, H, W) batch and encoded ``slice_batch`` at a time (the 2022 code
looped over slices one by one); padded slices are never encoded. The 2D parts keep SMARTNet's names
(``encoder.*``, ``seg_decoder.*``) and the 3D operators the 2022 code's (``LSTM``, ``fc``, ``head``;
``conv1``, ``bn1``, ``conv2``, ``bn2``, ``head``), so :func:`genesis_monai.weights.load_pretrained_weights` (``method="smart_net"``, ``parts``) moves the upstream
parts over by name.

Note: in training mode the encoder's BatchNorm sees the statistics of each slice chunk (up to
``slice_batch`` slices of several volumes), not of one slice position across the batch as in the
2022 code; in eval mode the result does not depend on chunking.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from genesis_monai.networks.smart_net import (DECODER_CHANNELS, STRIDE, SegmentationDecoder, SMARTNetEncoder,
                                              init_decoder)
from genesis_monai.networks.width import scale_channels, validate_width

logger = logging.getLogger(__name__)

__all__ = ["SMARTNetVolumeClassifier", "SMARTNetVolumeSegmenter", "valid_slice_mask",
           "check_volume"]

#: hidden width of the classifier's Linear after the LSTM, at width 1.0
_FC_CHANNELS = 512


def check_volume(shape: List[int], in_channels: int, name: str) -> None:
    """Raise ``ValueError`` unless ``shape`` is (B, in_channels, H, W, D), H and W divisible by 16, D >= 1."""
    if len(shape) != 5:
        raise ValueError(f"{name} expects volumes (B, C, H, W, D) with depth last, got shape {tuple(shape)}")
    if shape[1] != in_channels:
        raise ValueError(f"{name} expects {in_channels} input channel(s), got shape {tuple(shape)}")
    if shape[0] < 1 or shape[4] < 1:
        raise ValueError(f"{name}: empty batch or depth 0 in input shape {tuple(shape)}")
    for axis, size in zip("HW", shape[2:4]):
        if size % STRIDE or size == 0:
            raise ValueError(f"{name}: {axis} = {size} of input shape {tuple(shape)} is not divisible by {STRIDE} "
                             f"(the slice encoder's total stride)")


def _check_depths(depths: Any, batch: int, depth: int, name: str) -> torch.Tensor:
    d = torch.as_tensor(depths)
    if d.ndim != 1 or d.shape[0] != batch:
        raise ValueError(f"{name}: depths must have shape ({batch},) (one true depth per volume), got "
                         f"{tuple(d.shape)}")
    if d.is_floating_point():
        if not bool(torch.all(d == torch.round(d))):
            raise ValueError(f"{name}: depths must be whole numbers of slices, got {d.tolist()}")
    elif d.dtype == torch.bool:
        raise ValueError(f"{name}: depths must be integers, got a bool tensor")
    d = d.long()
    if bool(torch.any(d < 1)) or bool(torch.any(d > depth)):
        raise ValueError(f"{name}: every depth must be in [1, {depth}] (the padded depth D), got {d.tolist()}")
    return d


@torch.jit.unused
def _plain_tensor(x: torch.Tensor) -> torch.Tensor:
    """A MONAI MetaTensor as a plain tensor: its batched meta data cannot follow boolean slice indexing."""
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


def valid_slice_mask(batch: int, depth: int, depths: Optional[torch.Tensor], device: torch.device) -> torch.Tensor:
    """(B, D) bool: True for the first ``depths[b]`` slices of volume b (all True when ``depths`` is None)."""
    if depths is None:
        return torch.ones(batch, depth, dtype=torch.bool, device=device)
    return torch.arange(depth, device=device)[None, :] < depths.to(device)[:, None]


def _checked_volume(x: torch.Tensor, depths: Optional[torch.Tensor], in_channels: int, name: str
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (B, C, H, W, D) input as a plain tensor (checked in eager mode) and its (B, D) valid-slice mask."""
    if not torch.jit.is_scripting():
        check_volume(list(x.shape), in_channels, name)
        if depths is not None:
            depths = _check_depths(depths, x.shape[0], x.shape[4], name)
        x = _plain_tensor(x)
    return x, valid_slice_mask(x.shape[0], x.shape[4], depths, x.device)


class SMARTNetVolumeClassifier(nn.Module):
    """SMART-Net-CLS: per-slice ResNet-50 features -> packed BiLSTM over depth -> (B, 1) volume logits.

    Args:
        in_channels: channels of a slice (1).
        width: channel multiplier of the encoder (as :class:`~genesis_monai.networks.SMARTNet`), the
            LSTM hidden size and the Linear (1.0 = published).
        lstm_hidden: LSTM hidden size per direction at width 1.0 (512).
        lstm_layers: stacked LSTM layers (2).
        dropout: dropout after the first Linear (0.5).
        slice_batch: slices per encoder forward (memory vs. speed; no effect on eval outputs).

    ``forward(x, depths=None)``: x (B, in_channels, H, W, D) float, H and W divisible by 16; ``depths``
    (B,) integer true depths (slices past them are padding and are ignored), None = all D valid.
    Returns (B, 1) logits.
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0, lstm_hidden: int = 512, lstm_layers: int = 2,
                 dropout: float = 0.5, slice_batch: int = 64):
        super().__init__()
        self.in_channels = int(in_channels)
        self.width = validate_width(width)
        if int(slice_batch) < 1 or int(lstm_layers) < 1 or int(lstm_hidden) < 1:
            raise ValueError(f"SMARTNetVolumeClassifier: slice_batch, lstm_layers and lstm_hidden must be >= 1, got "
                             f"{slice_batch}, {lstm_layers}, {lstm_hidden}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"SMARTNetVolumeClassifier: dropout must be in [0, 1), got {dropout}")
        self.slice_batch = int(slice_batch)
        # constructor arguments kept under their own names: provenance reads them back from the instance
        self.lstm_hidden, self.lstm_layers, self.dropout = int(lstm_hidden), int(lstm_layers), float(dropout)
        self.encoder = SMARTNetEncoder(self.in_channels, self.width)
        self.feature_channels = int(self.encoder.out_channels[4])
        hidden = scale_channels(int(lstm_hidden), self.width)
        fc = scale_channels(_FC_CHANNELS, self.width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.LSTM = nn.LSTM(input_size=self.feature_channels, hidden_size=hidden, num_layers=int(lstm_layers),
                            batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, fc)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(fc, 1)

    @torch.jit.export
    def slice_features(self, slices: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) slices -> (N, feature_channels) pooled layer4 features, ``slice_batch`` at a time."""
        chunks: List[torch.Tensor] = []
        for start in range(0, slices.shape[0], self.slice_batch):
            chunks.append(self.pool(self.encoder(slices[start:start + self.slice_batch])[4]).flatten(1))
        return torch.cat(chunks, dim=0)

    def forward(self, x: torch.Tensor, depths: Optional[torch.Tensor] = None) -> torch.Tensor:
        x, mask = _checked_volume(x, depths, self.in_channels, "SMARTNetVolumeClassifier")  # mask: (B, D)
        batch, depth = x.shape[0], x.shape[4]
        # boolean indexing of the (B, D, C, H, W) view gathers only the valid slices, b-major then d
        feats = self.slice_features(x.permute(0, 4, 1, 2, 3)[mask])
        seq = feats.new_zeros(batch, depth, feats.shape[1])
        seq[mask] = feats
        packed = pack_padded_sequence(seq, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.LSTM(packed)
        # last layer's final states: h_n[-1] backward, h_n[-2] forward (the 2022 code's order, for its fc weights)
        h = torch.cat([h_n[-1], h_n[-2]], dim=-1)
        return self.head(self.drop(self.relu(self.fc(h))))


class SMARTNetVolumeSegmenter(nn.Module):
    """SMART-Net-SEG: per-slice encoder + U-Net decoder maps stacked along depth -> 3D conv refinement.

    Args:
        in_channels: channels of a slice (1).
        width: channel multiplier (as :class:`~genesis_monai.networks.SMARTNet`; 1.0 = published).
        decoder_channels, last_channels: the segmentation decoder's channels at width 1.0 (as SMARTNet);
            the 3D operator works on ``last_channels * width`` channels (16 at width 1.0).
        slice_batch: slices per 2D forward.

    ``forward(x, depths=None)``: x (B, in_channels, H, W, D) float, H and W divisible by 16, any D >= 1;
    ``depths`` (B,) true depths (padded slices contribute zero features). Returns (B, 1, H, W, D) logits.
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0, decoder_channels: Sequence[int] = DECODER_CHANNELS,
                 last_channels: int = 16, slice_batch: int = 64):
        super().__init__()
        self.in_channels = int(in_channels)
        self.width = validate_width(width)
        if int(slice_batch) < 1:
            raise ValueError(f"SMARTNetVolumeSegmenter: slice_batch must be >= 1, got {slice_batch}")
        self.slice_batch = int(slice_batch)
        self.decoder_channels, self.last_channels = tuple(int(c) for c in decoder_channels), int(last_channels)
        self.encoder = SMARTNetEncoder(self.in_channels, self.width)
        self.seg_decoder = SegmentationDecoder(self.encoder.out_channels, decoder_channels, last_channels, self.width)
        init_decoder(self.seg_decoder)
        c = self.seg_decoder.out_channels
        self.feature_channels = c
        self.conv1 = nn.Conv3d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(c)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(c)
        self.relu2 = nn.ReLU(inplace=True)
        self.head = nn.Conv3d(c, 1, 3, padding=1)

    @torch.jit.export
    def slice_maps(self, slices: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) slices -> (N, feature_channels, H, W) decoder maps, ``slice_batch`` at a time."""
        chunks: List[torch.Tensor] = []
        for start in range(0, slices.shape[0], self.slice_batch):
            chunks.append(self.seg_decoder(self.encoder(slices[start:start + self.slice_batch])))
        return torch.cat(chunks, dim=0)

    def forward(self, x: torch.Tensor, depths: Optional[torch.Tensor] = None) -> torch.Tensor:
        x, mask = _checked_volume(x, depths, self.in_channels, "SMARTNetVolumeSegmenter")
        batch, depth = x.shape[0], x.shape[4]
        maps = self.slice_maps(x.permute(0, 4, 1, 2, 3)[mask])  # (N, F, H, W)
        vol = maps.new_zeros(batch, depth, maps.shape[1], maps.shape[2], maps.shape[3])
        vol[mask] = maps
        vol = vol.permute(0, 2, 3, 4, 1)  # (B, F, H, W, D)
        vol = self.relu1(self.bn1(self.conv1(vol)))
        vol = self.relu2(self.bn2(self.conv2(vol)))
        return self.head(vol)
