"""Opt-in speed options for a network: channels-last memory format and ``torch.compile``.

Both are named options, off by default (the published recipes run without them). Each one is a
no-op with a logged reason where it does not apply, so a config can switch them on without
knowing the machine::

    "channels_last": false,
    "network": "$genesis_monai.engines.speed.optimize_network(@network_def.to(@device), channels_last=@channels_last)"

For ``torch.compile`` inside MONAI workflows prefer the trainer's/evaluator's own ``compile``
argument (``SupervisedTrainer(compile=True)``): it also turns MONAI MetaTensors into plain tensors
around the compiled forward. ``optimize_network(compile=True)`` compiles the module *in place*
(``nn.Module.compile``), so the object, its ``state_dict`` keys and checkpoints stay unchanged
(no ``_orig_mod.`` prefix), which suits plain PyTorch loops and inference.

Mixed precision is the workflows' ``amp`` option (configs' ``amp`` id), not handled here.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

__all__ = ["optimize_network", "channels_last_format"]

logger = logging.getLogger(__name__)

_CONV3D = (nn.Conv3d, nn.ConvTranspose3d)
_CONV2D = (nn.Conv2d, nn.ConvTranspose2d)


def channels_last_format(net: nn.Module) -> Optional[torch.memory_format]:
    """``torch.channels_last_3d`` for networks with 3-D convolutions, ``torch.channels_last`` for 2-D, else None."""
    mods = list(net.modules())
    if any(isinstance(m, _CONV3D) for m in mods):
        return torch.channels_last_3d
    if any(isinstance(m, _CONV2D) for m in mods):
        return torch.channels_last
    return None


def _device_of(net: nn.Module) -> torch.device:
    p = next(iter(net.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def optimize_network(
    net: nn.Module,
    channels_last: bool = False,
    compile: bool = False,  # noqa: A002  (the name the configs use)
    device: Optional[Union[str, torch.device]] = None,
    compile_kwargs: Optional[Mapping[str, Any]] = None,
) -> nn.Module:
    """Apply the requested speed options to ``net`` in place and return it (the same object).

    Args:
        net: the network.
        channels_last: store convolution weights channels-last (``channels_last_3d`` for 3-D nets,
            ``channels_last`` for 2-D); convolutions then run in that layout. Skipped with a log
            line when the net has no 2-D/3-D convolution, or on MPS for 3-D nets.
        compile: ``net.compile(**compile_kwargs)`` (in place; keys unchanged). On the CPU it is
            allowed but warned about: compilation takes long and needs a C++ compiler for the
            default inductor backend. Skipped with a log line where ``torch.compile`` is missing.
        device: move the network there first (default: leave it where it is).
        compile_kwargs: passed to ``torch.compile`` (e.g. ``{"mode": "max-autotune"}``,
            ``{"backend": "eager"}`` for a quick check).
    """
    if device is not None:
        net = net.to(device)
    dev = _device_of(net)
    name = type(net).__name__
    if channels_last:
        fmt = channels_last_format(net)
        if fmt is None:
            logger.info("channels_last skipped for %s: no 2-D or 3-D convolution in the network", name)
        elif fmt is torch.channels_last_3d and dev.type == "mps":
            logger.info("channels_last skipped for %s: channels_last_3d is not supported on MPS", name)
        else:
            net = net.to(memory_format=fmt)
            logger.info("%s: weights in %s on %s", name, str(fmt).replace("torch.", ""), dev)
    if compile:
        if not hasattr(torch, "compile") or not hasattr(net, "compile"):
            logger.warning("compile skipped for %s: torch %s has no torch.compile", name, torch.__version__)
        else:
            kwargs = dict(compile_kwargs or {})
            if dev.type == "cpu" and kwargs.get("backend", "inductor") == "inductor":
                logger.warning(
                    "compiling %s for the CPU: the first iterations are slow (minutes for a 3-D U-Net) and the "
                    "inductor backend needs a working C++ compiler; the gain on CPU is usually small", name)
            net.compile(**kwargs)
            logger.info("%s: forward compiled with torch.compile(%s)", name, kwargs or "")
    return net
