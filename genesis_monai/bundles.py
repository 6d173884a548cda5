"""Finding the project's bundles and loading a bundle's network, ready to use, from Python.

Example::

    import genesis_monai
    net = genesis_monai.load_bundle("models_genesis", weights="finetuned")   # models/model.pt
    enc = genesis_monai.load_bundle("models_genesis", weights="pretrained")  # models/pretrained.pt

The network is built from the bundle's ``network_def`` (configs/inference.json) with MONAI's own
``ConfigParser``, so it is the same object MONAI's tools build; the MONAI-native equivalent for
fine-tuned weights is ``monai.bundle.load("models_genesis", bundle_dir=..., workflow_type="inference")``
(see docs/python_api.md). Bundles live in the repository's ``bundles/`` folder, or in
``$GENESIS_MONAI_BUNDLES``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Union

import torch
from torch import nn

__all__ = ["bundles_root", "bundle_path", "available_bundles", "bundle_parser", "bundle_network_def",
           "load_bundle", "WEIGHT_CHOICES"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: ``weights`` values of :func:`load_bundle` and the file each one reads (relative to the bundle)
WEIGHT_CHOICES = {"finetuned": "models/model.pt", "pretrained": "models/pretrained.pt", "none": None}


def bundles_root() -> Path:
    """``$GENESIS_MONAI_BUNDLES`` if set, else ``bundles/`` beside the package (an editable install or a clone)."""
    env = os.environ.get("GENESIS_MONAI_BUNDLES")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / "bundles"
    if not root.is_dir():
        raise FileNotFoundError(
            f"bundle folder {root} not found: install genesis_monai from a clone (pip install -e .) or set "
            "GENESIS_MONAI_BUNDLES to the folder that holds the bundles"
        )
    return root


def _is_bundle(path: Path) -> bool:
    return (path / "configs" / "metadata.json").is_file()


def available_bundles(root: Optional[PathLike] = None) -> List[str]:
    """Names of the folders in ``root`` (default :func:`bundles_root`) that hold ``configs/metadata.json``."""
    root = Path(root).expanduser() if root is not None else bundles_root()
    return sorted(p.name for p in root.iterdir() if _is_bundle(p)) if root.is_dir() else []


def bundle_path(name: str, bundle_dir: Optional[PathLike] = None) -> Path:
    """Folder of bundle ``name`` (e.g. ``"models_genesis"``) in ``bundle_dir`` (default :func:`bundles_root`);
    an error naming the bundles found there otherwise."""
    root = Path(bundle_dir).expanduser() if bundle_dir is not None else bundles_root()
    path = root / name
    if not _is_bundle(path):
        raise FileNotFoundError(f"no bundle {name!r} in {root} (expected {path / 'configs' / 'metadata.json'}); "
                                f"available: {available_bundles(root)}")
    return path


def bundle_parser(root: PathLike, config: str = "inference.json", overrides: Optional[Mapping[str, Any]] = None):
    """A ``monai.bundle.ConfigParser`` over ``root/configs/<config>`` with ``bundle_root`` set (nothing resolved yet).

    ``overrides`` must name ids the config defines (:func:`genesis_monai.config_ids.check_override_ids`).
    """
    from monai.bundle import ConfigParser

    from genesis_monai.config_ids import check_override_ids

    cfg = Path(root) / "configs" / config
    if not cfg.is_file():
        raise FileNotFoundError(f"bundle config not found: {cfg}")
    parser = ConfigParser()
    parser.read_config(str(cfg))
    parser["bundle_root"] = str(root)
    if overrides:
        check_override_ids(overrides, parser.get(), source=str(cfg))
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def bundle_network_def(root: PathLike, config: str = "inference.json",
                       overrides: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """Instantiate ``network_def`` of the bundle at ``root`` from ``configs/<config>`` (random weights).

    Only ``network_def`` and what it refers to are resolved: datasets and the config's
    ``initialize`` list are not touched. ``overrides`` are config ids to set first (e.g.
    ``{"network_width": 1.0}``).
    """
    parser = bundle_parser(root, config, overrides)
    if "network_def" not in parser:
        raise KeyError(f"{Path(root) / 'configs' / config} defines no 'network_def'")
    net = parser.get_parsed_content("network_def", instantiate=True)
    if not isinstance(net, nn.Module):
        raise TypeError(f"'network_def' of {Path(root) / 'configs' / config} is a {type(net).__name__}, "
                        "not a torch.nn.Module")
    return net


def _pretrained_method(root: Path, overrides: Optional[Mapping[str, Any]]) -> str:
    """The checkpoint layout that the bundle's fine-tuning config names (``pretrained_method``)."""
    parser = bundle_parser(root, "train.json", overrides)
    if "pretrained_method" not in parser:
        raise KeyError(f"{root / 'configs' / 'train.json'} defines no 'pretrained_method' (the checkpoint layout of "
                       "its pretrained weights)")
    return str(parser.get_parsed_content("pretrained_method"))


def _pretrained_parts(root: Path, overrides: Optional[Mapping[str, Any]]) -> Optional[List[str]]:
    """The sub-networks fine-tuning loads from the pretrained checkpoint (``pretrained_parts``; None: all)."""
    parser = bundle_parser(root, "train.json", overrides)
    if "pretrained_parts" not in parser:
        return None
    parts = parser.get_parsed_content("pretrained_parts")
    return None if parts is None else [str(p) for p in parts]


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
        width = getattr(net, "width", None)
        hint = (f" The network_def was built at width {width}: if the weights were trained at another width "
                "(demo caps use 0.25), pass overrides={'network_width': ...} or {'use_demo_caps': False}."
                if width is not None else "")
        raise ValueError(f"{path} does not fit the bundle's network_def: {err}{hint}") from err


def load_bundle(
    name: str,
    weights: str = "finetuned",
    device: Union[str, torch.device] = "cpu",
    bundle_dir: Optional[PathLike] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> nn.Module:
    """Build bundle ``name``'s network (its ``network_def``) with weights, in eval mode, on ``device``.

    Args:
        name: bundle folder name, e.g. ``"models_genesis"``.
        weights: ``"finetuned"`` reads ``models/model.pt`` (a flat state dict or ``{"model": ...}``,
            as written by configs/train.json; loaded strictly); ``"pretrained"`` reads
            ``models/pretrained.pt`` through :func:`genesis_monai.weights.load_pretrained_weights`
            with the layout named by the bundle's ``pretrained_method`` and only its
            ``pretrained_parts`` when train.json names them (SMART-Net: the encoder; our pretraining output, or
            a published checkpoint imported with ``python -m genesis_monai import-weights``);
            ``"none"`` leaves the random initialisation.
        device: where to put the network.
        bundle_dir: folder that holds the bundle folder ``name``; default: the repository's
            ``bundles/`` (or ``$GENESIS_MONAI_BUNDLES``).
        overrides: config ids to set before building, e.g. ``{"network_width": 1.0}`` for weights
            trained at the published width while the bundle's default data set is the demo.

    Raises:
        FileNotFoundError: the bundle or the weight file is missing (the message says how to make it).
        ValueError: unknown ``weights``, or a checkpoint that does not fit the network.
    """
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {sorted(WEIGHT_CHOICES)}, got {weights!r}")
    root = bundle_path(name, bundle_dir)
    net = bundle_network_def(root, overrides=overrides)
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
                       f"python -m genesis_monai import-weights SRC {path} --method "
                       f"{_pretrained_method(root, overrides)}")
            raise FileNotFoundError(f"{weights} weights of bundle {name!r} not found: {path}; {how}")
        if weights == "finetuned":
            _load_finetuned(net, path)
        else:
            from genesis_monai.weights import load_pretrained_weights

            load_pretrained_weights(net, str(path), method=_pretrained_method(root, overrides),
                                    parts=_pretrained_parts(root, overrides))
        logger.info("bundle %s: loaded %s weights from %s", name, weights, path)
    return net.to(device).eval()
