"""A sigmoid for networks that output logits, so any MONAI network can restore [0, 1] cubes.

The Genesis UNet3D ends with a sigmoid inside the network (the published design); MONAI's
networks (``BasicUNet``, ``UNet``, ``SegResNet``, ``SwinUNETR``, ``DynUNet``, ...) output logits.
Restoration pretraining compares the output with a target in [0, 1], so a logit network needs a
sigmoid on top; fine-tuning and inference then apply it in the loss (``DiceLoss(sigmoid=...)``) and
post-processing (``Activationsd(sigmoid=...)``), keeping the network itself, and so its
state-dict keys, exactly as MONAI builds it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ends_with_sigmoid", "needs_sigmoid", "WithSigmoid", "with_sigmoid", "ACTIVATION_CHOICES"]

#: values of the bundles' ``restoration_activation`` id
ACTIVATION_CHOICES = ("auto", "sigmoid", "none")


def ends_with_sigmoid(net: nn.Module) -> bool:
    """True when ``net``'s output is already a sigmoid: a Genesis UNet3D with ``out_activation="sigmoid"``
    (the default), or a network whose last registered leaf module is ``nn.Sigmoid``."""
    act = getattr(net, "out_activation", None)
    if isinstance(act, str):
        return act == "sigmoid"
    leaves = [m for m in net.modules() if not list(m.children())]
    return bool(leaves) and isinstance(leaves[-1], nn.Sigmoid)


def needs_sigmoid(net: nn.Module, activation: str = "auto") -> bool:
    """Whether a sigmoid must be applied to ``net``'s output to get values in [0, 1].

    ``activation``: "auto" (a sigmoid unless the network already ends with one), "sigmoid"
    (always) or "none" (never: the output is used as it is).
    """
    if activation not in ACTIVATION_CHOICES:
        raise ValueError(f"restoration_activation must be one of {ACTIVATION_CHOICES}, got {activation!r}")
    if activation == "auto":
        return not ends_with_sigmoid(net)
    return activation == "sigmoid"


class WithSigmoid(nn.Module):
    """``sigmoid(module(x))``. Save ``module`` (not this wrapper) so checkpoints keep the network's own keys."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.module(x))


def with_sigmoid(net: nn.Module, activation: str = "auto") -> nn.Module:
    """``net`` itself when no sigmoid is needed (see :func:`needs_sigmoid`), else ``WithSigmoid(net)``."""
    return WithSigmoid(net) if needs_sigmoid(net, activation) else net
