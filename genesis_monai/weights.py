"""Import of published checkpoints into the networks of this package.

A *checkpoint layout* says how a method's published file maps onto our parameter names:
which prefixes to strip (``module.`` from DataParallel, ``base_model.`` from fine-tuning
wrappers), which keys to drop (projection heads, prototypes, classification heads fine-tuning
does not use) and which target keys must be filled. New methods register a layout in
:data:`CHECKPOINT_LAYOUTS`.

Typical use::

    from genesis_monai.weights import import_checkpoint
    state = import_checkpoint("Genesis_Chest_CT.pt", method="models_genesis")
    UNet3D().load_state_dict(state, strict=True)

or, from the command line, ``python -m genesis_monai import-weights SRC DST --method models_genesis``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from genesis_monai.io_utils import atomic_torch_save

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointLayout",
    "CHECKPOINT_LAYOUTS",
    "ImportReport",
    "register_layout",
    "read_checkpoint",
    "convert_state_dict",
    "import_checkpoint",
    "load_pretrained_weights",
    "import_weights_cli",
]

#: keys under which training scripts nest the weights, tried in this order
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "network", "net", "teacher", "student")


def _unet3d_factory() -> nn.Module:
    from genesis_monai.networks import UNet3D

    return UNet3D()


@dataclass(frozen=True)
class CheckpointLayout:
    """How one method's published checkpoint maps onto a target network.

    Attributes:
        name: method name used on the command line (``--method``).
        target: builds an instance of the target network (only its state-dict keys/shapes are used).
        strip_prefixes: prefixes removed from every key, repeatedly, in order (e.g. ``module.``).
        fallback_prefixes: prefixes removed from a key only when the key does not match a target
            key as it is (the Semantic Genesis/TransVW releases' ``classficationNet.``).
        drop_substrings: keys containing any of these are dropped silently as expected extras.
        required_prefixes: target keys with these prefixes MUST be filled, else import fails.
        strict: every target key must be filled (``num_batches_tracked`` may be absent).
        description: one line for help and provenance.
    """

    name: str
    target: Callable[[], nn.Module] = _unet3d_factory
    strip_prefixes: Tuple[str, ...] = ("module.",)
    fallback_prefixes: Tuple[str, ...] = ()
    drop_substrings: Tuple[str, ...] = ()
    required_prefixes: Tuple[str, ...] = ("down_tr",)
    strict: bool = False
    description: str = ""


CHECKPOINT_LAYOUTS: Dict[str, CheckpointLayout] = {}


def register_layout(layout: CheckpointLayout) -> CheckpointLayout:
    """Add (or replace) a layout in :data:`CHECKPOINT_LAYOUTS`; returns it."""
    CHECKPOINT_LAYOUTS[layout.name] = layout
    return layout


register_layout(
    CheckpointLayout(
        name="models_genesis",
        strip_prefixes=("module.", "base_model."),
        # heads of classification fine-tuning / Semantic-Genesis-style checkpoints are not UNet3D
        drop_substrings=("dense_1.", "dense_2.", "clc_out."),
        strict=True,
        description="Models Genesis UNet3D (Genesis_Chest_CT.pt): 106 keys, optional 'module.' prefix",
    )
)
for _name in ("semantic_genesis", "transvw"):
    register_layout(
        CheckpointLayout(
            name=_name,
            strip_prefixes=("module.",),
            fallback_prefixes=("classficationNet.", "classificationNet."),
            drop_substrings=("projection_head", "prototypes", "clc_out."),
            strict=False,
            description=f"{_name} release: YNet3D/UNet3D keys, encoder copies under 'classficationNet.', "
            "projection head and prototypes dropped; the encoder must be complete",
        )
    )


@dataclass
class ImportReport:
    """What a conversion matched, in plain words (see :meth:`summary`)."""

    source: str
    method: str
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    n_target: int = 0

    def summary(self) -> str:
        lines = [f"{self.source}: matched {len(self.matched)} of {self.n_target} tensors of the target network"]
        if self.missing:
            lines.append(f"  missing in the checkpoint ({len(self.missing)}): {_abbrev(self.missing)}")
        if self.shape_mismatch:
            items = [f"{k} checkpoint {tuple(a)} vs network {tuple(b)}" for k, a, b in self.shape_mismatch]
            lines.append(f"  shape mismatch, not loaded ({len(items)}): {_abbrev(items)}")
        if self.unexpected:
            lines.append(f"  unused checkpoint keys ({len(self.unexpected)}): {_abbrev(self.unexpected)}")
        if self.dropped:
            lines.append(f"  dropped as expected for {self.method} ({len(self.dropped)}): {_abbrev(self.dropped)}")
        return "\n".join(lines)


def _abbrev(items: Sequence[str], n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _unwrap(obj: object, source: str) -> "OrderedDict[str, torch.Tensor]":
    seen = []
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise ValueError(f"{source}: expected a state dict or a dict holding one, found {type(obj).__name__}")
        nested = next((k for k in _NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            tensors = OrderedDict((k, v) for k, v in obj.items() if torch.is_tensor(v))
            if tensors:
                return tensors
            raise ValueError(
                f"{source}: no weights found; top-level keys {sorted(map(str, obj))[:10]}, "
                f"expected tensors or one of {_NESTING_KEYS}{' (looked inside ' + '/'.join(seen) + ')' if seen else ''}"
            )
        seen.append(nested)
        obj = obj[nested]
    return OrderedDict(obj)


def read_checkpoint(path: str, trusted: bool = False) -> dict:
    """Load a checkpoint file with ``torch.load`` on the CPU.

    By default only tensors and plain containers are unpickled (``weights_only=True``). A file
    that needs arbitrary unpickling fails with a message; pass ``trusted=True`` only for files
    from a source you trust.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises several types for bad or unsafe pickles
        hint = "" if trusted else " If the file comes from a source you trust, retry with trusted=True (--trusted)."
        raise ValueError(f"cannot read checkpoint {path}: {err}.{hint}") from err


def _strip(key: str, prefixes: Sequence[str]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def convert_state_dict(
    raw: Mapping[str, torch.Tensor],
    layout: CheckpointLayout,
    target_state: Mapping[str, torch.Tensor],
    source: str = "<state dict>",
) -> Tuple["OrderedDict[str, torch.Tensor]", ImportReport]:
    """Map the keys of ``raw`` onto ``target_state``'s keys following ``layout``.

    Returns the converted state dict (only keys of the target with matching shapes) and a report.
    Raises ``ValueError`` when required keys stay unfilled (or any key, for strict layouts).
    """
    report = ImportReport(source=source, method=layout.name, n_target=len(target_state))
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in raw.items():
        if any(s in key for s in layout.drop_substrings):
            report.dropped.append(key)
            continue
        name = _strip(key, layout.strip_prefixes)
        if name not in target_state:
            alt = _strip(name, layout.fallback_prefixes)
            if alt in target_state and alt not in out:
                name = alt
        if name not in target_state:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target_state[name].shape):
            report.shape_mismatch.append((name, tuple(value.shape), tuple(target_state[name].shape)))
            continue
        out[name] = value
    report.matched = list(out)
    # old checkpoints may lack the BatchNorm counters; PyTorch's loader tolerates that
    report.missing = [k for k in target_state if k not in out and not k.endswith("num_batches_tracked")]
    problems = [k for k in report.missing if layout.strict or k.startswith(layout.required_prefixes)]
    problems += [k for k, _, _ in report.shape_mismatch if layout.strict or k.startswith(layout.required_prefixes)]
    if problems:
        raise ValueError(
            f"checkpoint {source} does not fit method {layout.name!r}: {len(problems)} required tensors unfilled "
            f"or of the wrong shape ({_abbrev(problems)}).\n{report.summary()}"
        )
    return out, report


def import_checkpoint(
    path: str,
    method: str = "models_genesis",
    target: Optional[nn.Module] = None,
    trusted: bool = False,
    return_report: bool = False,
):
    """Read a published checkpoint and return a state dict for our network.

    Args:
        path: checkpoint file (a state dict, or a dict nesting one under ``state_dict``,
            ``model`` ...; keys may carry ``module.``).
        method: a key of :data:`CHECKPOINT_LAYOUTS` (``models_genesis``, ``semantic_genesis``, ``transvw``).
        target: the network to fit (default: the layout's target, e.g. ``UNet3D()``). Keys of
            ``target`` whose shapes differ (e.g. another ``n_class``) are reported and left out.
        trusted: allow full unpickling (see :func:`read_checkpoint`).
        return_report: also return the :class:`ImportReport`.

    Returns:
        ``OrderedDict`` name -> tensor (and the report when ``return_report``).
    """
    if method not in CHECKPOINT_LAYOUTS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(CHECKPOINT_LAYOUTS)}")
    layout = CHECKPOINT_LAYOUTS[method]
    raw = _unwrap(read_checkpoint(path, trusted=trusted), path)
    target_state = (target if target is not None else layout.target()).state_dict()
    state, report = convert_state_dict(raw, layout, target_state, source=path)
    logger.info(report.summary())
    return (state, report) if return_report else state


def load_pretrained_weights(
    network: nn.Module,
    path: Optional[str],
    method: str = "models_genesis",
    from_scratch: bool = False,
    trusted: bool = False,
) -> nn.Module:
    """Load pretrained weights into ``network`` loudly; returns ``network``.

    Fine-tuning must never train from scratch by accident (ModelsGenesis issue #46): a missing
    file or a checkpoint that does not fit is an error unless ``from_scratch=True``, and the log
    names the file and how many tensors were loaded.
    """
    if from_scratch:
        logger.warning("from_scratch=True: training %s from random initialisation (no pretrained weights).",
                       type(network).__name__)
        return network
    if not path or not os.path.isfile(str(path)):
        raise FileNotFoundError(
            f"pretrained weights not found: {path!r}. Pretrain first (configs/training.json), import published "
            "weights with `python -m genesis_monai import-weights SRC DST`, or set from_scratch=true explicitly."
        )
    state, report = import_checkpoint(str(path), method=method, target=network, trusted=trusted, return_report=True)
    result = network.load_state_dict(state, strict=False)
    logger.warning("Loaded pretrained weights from %s: %d of %d tensors matched.%s", path, len(report.matched),
                   report.n_target, ("\n" + report.summary()) if (report.missing or report.unexpected) else "")
    del result
    return network


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_weights_cli(src: str, dst: str, method: str = "models_genesis", trusted: bool = False) -> str:
    """Convert a published checkpoint SRC into DST (``{"state_dict", "provenance"}``) for our networks.

    Example: ``python -m genesis_monai import-weights Genesis_Chest_CT.pt
    bundles/models_genesis/models/pretrained.pt --method models_genesis``.
    """
    from genesis_monai import __version__

    state, report = import_checkpoint(src, method=method, trusted=trusted, return_report=True)
    provenance = {
        "method": method,
        "source_file": os.path.abspath(src),
        "source_sha256": _sha256(src),
        "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "genesis_monai_version": __version__,
        "matched_tensors": len(report.matched),
    }
    atomic_torch_save({"state_dict": state, "provenance": provenance}, dst)
    print(report.summary())
    print(f"wrote {len(state)} tensors to {dst}")
    return dst
