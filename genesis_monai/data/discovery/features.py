"""Self-discovery step 2: one feature vector per patient volume (research/upstream_genesis.md §6.2).

The reference reads the 512-channel bottleneck (``depth_7_relu``, 16x16x8 for a 128x128x64 input) of its
auto-encoder and global-average-pools it: a 512-d float32 vector per volume. Here the network is the
Genesis :class:`~genesis_monai.networks.unet3d.UNet3D` (any ``width``: F = its ``feature_channels``,
512 at width 1) and the feature is the global average of :meth:`forward_features` (the deepest encoder
stage ``down_tr512``, which is the reference auto-encoder's bottleneck position). Weights come from
a trained auto-encoder / Models Genesis checkpoint (:func:`genesis_monai.weights.load_pretrained_weights`)
or, when none is given, from a fixed seeded random initialisation (with a WARNING: such features rank
volumes by coarse intensity layout only).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from genesis_monai.data.discovery.volumes import VolumeSet, resize_volumes
from genesis_monai.networks.unet3d import DIVISOR, UNet3D

logger = logging.getLogger(__name__)

__all__ = ["feature_network", "extract_features", "resolve_device", "check_feature_shape",
           "REFERENCE_FEATURE_SHAPE"]

#: the reference auto-encoder input: whole volumes resized to 128x128x64
REFERENCE_FEATURE_SHAPE = (128, 128, 64)


def resolve_device(device: Union[None, str, torch.device] = "auto") -> torch.device:
    """``"auto"`` / None -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_feature_shape(shape: Any) -> tuple:
    """``shape`` as 3 ints divisible by 8 (the UNet3D pools three times), else ValueError."""
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or min(out) < DIVISOR or any(s % DIVISOR for s in out):
        raise ValueError(f"feature_shape must be 3 sizes divisible by {DIVISOR} (e.g. 128,128,64), got {shape!r}")
    return out


def feature_network(weights: Optional[str] = None, width: float = 1.0, seed: int = 0,
                    method: str = "models_genesis", trusted: bool = False) -> nn.Module:
    """The feature extractor: a :class:`UNet3D` at ``width``, in eval mode.

    Args:
        weights: checkpoint path (our own UNet3D / auto-encoder checkpoint or a published Models Genesis
            one, loaded with :func:`~genesis_monai.weights.load_pretrained_weights`; its width must equal
            ``width``). None: a fixed random initialisation from ``seed`` (the global torch RNG is left
            untouched) and a WARNING that such features are weak.
        width: channel multiplier (1.0 = the published network, F = 512).
        seed: seed of the random initialisation (ignored with ``weights``).
        method / trusted: as :func:`~genesis_monai.weights.load_pretrained_weights`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))  # same random network for the same seed, whatever ran before
        net = UNet3D(width=width)
    if weights is None:
        logger.warning("self-discovery: no feature weights given: using a randomly initialised UNet3D (width %g, "
                       "seed %d). Features of an untrained network are weak; pass weights= a trained auto-encoder "
                       "or Models Genesis checkpoint for meaningful nearest neighbours.", net.width, int(seed))
    else:
        from genesis_monai.weights import load_pretrained_weights

        load_pretrained_weights(net, str(weights), method=method, trusted=trusted)
    return net.eval()


def _pool(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    feat = network.forward_features(batch) if hasattr(network, "forward_features") else network(batch)
    if isinstance(feat, (tuple, list)):  # an encode()-style output: the deepest stage is last
        feat = feat[-1]
    return feat.float().mean(dim=tuple(range(2, feat.ndim)))  # global average pooling -> (B, F)


@torch.no_grad()
def extract_features(network: Union[nn.Module, str, None], volumes: Union[torch.Tensor, np.ndarray, VolumeSet],
                     batch_size: int = 2, device: Union[None, str, torch.device] = "auto",
                     feature_shape: Any = REFERENCE_FEATURE_SHAPE, width: float = 1.0, seed: int = 0,
                     resize_mode: str = "trilinear",
                     progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Global-average-pooled deepest encoder features, one row per volume: float32 (N, F).

    Args:
        network: a network with ``forward_features(x) -> (B, F, x, y, z)`` (UNet3D / GenesisEncoder at any
            width: F = 512 * width), a checkpoint path (loaded into ``UNet3D(width)``) or None (seeded
            random UNet3D, with a WARNING); see :func:`feature_network`. Run in eval mode; its mode is
            restored afterwards.
        volumes: a tensor / array (N, 1, X, Y, Z) in [0, 1] (already at the feature shape or resized to
            it), or a :class:`VolumeSet` (read one volume at a time, resized to ``feature_shape``;
            unreadable ones are skipped with a WARNING line and left out of the result: the rows then
            follow ``volumes.readable``).
        batch_size: volumes per forward pass.
        device: "auto" (CUDA if available), "cpu", "cuda:0", ...
        feature_shape: (X, Y, Z) the volumes are resized to, divisible by 8 (reference 128x128x64).
        width / seed: for ``network`` None or a path.
        resize_mode: "trilinear" or "area" (:func:`resize_volumes`).
        progress: optional callable ``(n)`` called after each volume.
    """
    dev = resolve_device(device)
    shape = check_feature_shape(feature_shape)
    if network is None or isinstance(network, str):
        network = feature_network(network, width=width, seed=seed)
    was_training = network.training
    net = network.to(dev).eval()
    batch_size = max(1, int(batch_size))
    rows = []
    try:
        if isinstance(volumes, VolumeSet):
            pending = []
            for _, vol in volumes.scan_resized(shape, device=dev, mode=resize_mode, progress=progress):
                pending.append(vol)
                if len(pending) == batch_size:
                    rows.append(_pool(net, torch.cat(pending)).cpu())
                    pending = []
            if pending:
                rows.append(_pool(net, torch.cat(pending)).cpu())
        else:
            data = torch.as_tensor(volumes)
            if data.ndim == 4:
                data = data[:, None]
            if data.ndim != 5:
                raise ValueError(f"volumes must be (N, 1, X, Y, Z), got shape {tuple(data.shape)}")
            for start in range(0, len(data), batch_size):
                batch = resize_volumes(data[start:start + batch_size], shape, device=dev, mode=resize_mode)
                rows.append(_pool(net, batch).cpu())
                if progress is not None:
                    progress(len(batch))
    finally:
        network.train(was_training)
    if not rows:
        channels = getattr(network, "feature_channels", 0)
        return np.zeros((0, int(channels)), dtype=np.float32)
    return torch.cat(rows).numpy().astype(np.float32, copy=False)
