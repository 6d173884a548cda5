"""Load a bundle's network, ready to use, from Python.

Example::

    import genesis_monai
    net = genesis_monai.load_bundle("models_genesis", weights="finetuned")   # models/model.pt
    enc = genesis_monai.load_bundle("models_genesis", weights="pretrained")  # models/pretrained.pt

The network is built from the bundle's ``network_def`` (configs/inference.json), so it is the same
object MONAI's own tools build; the MONAI-native equivalent for fine-tuned weights is
``monai.bundle.load("models_genesis", bundle_dir=..., workflow_type="inference")``
(see docs/python_api.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

__all__ = ["load_bundle", "bundle_network_def", "WEIGHT_CHOICES"]

logger = logging.getLogger(__name__)

#: ``weights`` values of :func:`load_bundle` and the file each one reads (relative to the bundle)
WEIGHT_CHOICES = {"finetuned": "models/model.pt", "pretrained": "models/pretrained.pt", "none": None}

_DEFAULT_PRETRAINED_METHOD = "models_genesis"


def _bundle_root(name: str, bundle_dir: Optional[Union[str, "os.PathLike[str]"]]) -> Path:
    if bundle_dir is None:
        from genesis_monai.bundle_paths import bundle_path

        return bundle_path(name)
    root = Path(bundle_dir).expanduser() / name
    if not (root / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(
            f"no bundle {name!r} in {Path(bundle_dir).expanduser()}: expected {root / 'configs' / 'metadata.json'}"
        )
    return root


def bundle_network_def(root: Union[str, "os.PathLike[str]"], config: str = "inference.json") -> nn.Module:
    """Instantiate ``network_def`` of the bundle at ``root`` from ``configs/<config>`` (random weights).

    Only ``network_def`` is resolved: data folders, datasets and the config's ``initialize`` list
    are not touched.
    """
    from monai.bundle import ConfigParser

    cfg = Path(root) / "configs" / config
    if not cfg.is_file():
        raise FileNotFoundError(f"bundle config not found: {cfg}")
    parser = ConfigParser()
    parser.read_config(str(cfg))
    if "network_def" not in parser:
        raise KeyError(f"{cfg} defines no 'network_def'")
    parser["bundle_root"] = str(root)
    net = parser.get_parsed_content("network_def", instantiate=True)
    if not isinstance(net, nn.Module):
        raise TypeError(f"'network_def' of {cfg} is a {type(net).__name__}, not a torch.nn.Module")
    return net


def _pretrained_method(root: Path) -> str:
    """The checkpoint layout named by the fine-tuning config (``pretrained_method``), else ``models_genesis``."""
    import json

    train = root / "configs" / "train.json"
    if train.is_file():
        with open(train) as f:
            method = json.load(f).get("pretrained_method")
        if isinstance(method, str) and not method.startswith(("$", "@", "%")):
            return method
    return _DEFAULT_PRETRAINED_METHOD


def _load_finetuned(net: nn.Module, path: Path) -> None:
    from genesis_monai.weights import read_checkpoint

    ckpt = read_checkpoint(str(path))
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}, found {type(state).__name__}")
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the bundle's network_def: {err}") from err


def load_bundle(
    name: str = "models_genesis",
    weights: str = "finetuned",
    device: Union[str, torch.device] = "cpu",
    bundle_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> nn.Module:
    """Build bundle ``name``'s network (its ``network_def``) with weights, in eval mode, on ``device``.

    Args:
        name: bundle folder name, e.g. ``"models_genesis"``.
        weights: ``"finetuned"`` reads ``models/model.pt`` (a flat state dict or ``{"model": ...}``,
            as written by configs/train.json; loaded strictly); ``"pretrained"`` reads
            ``models/pretrained.pt`` through :func:`genesis_monai.weights.load_pretrained_weights`
            (our pretraining output, or a published checkpoint imported with
            ``python -m genesis_monai import-weights``); ``"none"`` leaves the random initialisation.
        device: where to put the network.
        bundle_dir: folder that holds the bundle folder ``name``; default: the repository's
            ``bundles/`` (or ``$GENESIS_MONAI_BUNDLES``), see :mod:`genesis_monai.bundle_paths`.

    Raises:
        FileNotFoundError: the bundle or the weight file is missing (the message says how to make it).
        ValueError: unknown ``weights``, or a checkpoint that does not fit the network.
    """
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {sorted(WEIGHT_CHOICES)}, got {weights!r}")
    root = _bundle_root(name, bundle_dir)
    net = bundle_network_def(root)
    rel = WEIGHT_CHOICES[weights]
    if rel is not None:
        path = root / rel
        if not path.is_file():
            if weights == "finetuned":
                how = (f"fine-tune first: cd {root} && python -m monai.bundle run --config_file configs/train.json "
                       "(writes models/model.pt), or copy a fine-tuned model.pt there")
            else:
                how = (f"pretrain first: cd {root} && python -m monai.bundle run training --config_file "
                       "configs/training.json (writes models/pretrained.pt), or import published weights: "
                       f"python -m genesis_monai import-weights SRC {path} --method {_pretrained_method(root)}")
            raise FileNotFoundError(f"{weights} weights of bundle {name!r} not found: {path}; {how}")
        if weights == "finetuned":
            _load_finetuned(net, path)
        else:
            from genesis_monai.weights import load_pretrained_weights

            load_pretrained_weights(net, str(path), method=_pretrained_method(root))
        logger.info("bundle %s: loaded %s weights from %s", name, weights, path)
    return net.to(device).eval()
