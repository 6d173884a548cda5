"""Loading pretrained checkpoints into networks, loudly: published layouts and any MONAI network.

Two rules, chosen by the target network:

* **Published layouts** (targets that contain a Genesis encoder: :class:`~genesis_monai.networks.UNet3D`,
  :class:`~genesis_monai.networks.GenesisClassifier`, heads built on them). A *checkpoint layout*
  says how a method's published file maps onto our parameter names: which prefixes to strip
  (``module.`` from DataParallel, ``base_model.`` from fine-tuning wrappers), which keys to drop
  (projection heads, prototypes, classification heads fine-tuning does not use) and which target
  keys must be filled. The checkpoint's width (``down_tr64.ops.0.conv1.weight`` output channels / 32)
  must equal the network's. New methods register a layout in :data:`CHECKPOINT_LAYOUTS`.
* **Any other network** (BasicUNet, UNet, SegResNet, SwinUNETR, DynUNet, ... fine-tuned from its own
  restoration pretraining): match by key name and shape, see :func:`match_state_dict` for the rule.

Either way the result is logged (file, matched/total tensors, examples of what did not match) and a
checkpoint that does not fit raises ``ValueError``: fine-tuning never trains from scratch by
accident (ModelsGenesis issue #46).

Typical use::

    from genesis_monai.weights import import_checkpoint, load_pretrained_weights
    state = import_checkpoint("Genesis_Chest_CT.pt", method="models_genesis")
    UNet3D().load_state_dict(state, strict=True)
    load_pretrained_weights(BasicUNet(...), "models/pretrained.pt", method="models_genesis")

or, from the command line, ``python -m genesis_monai import-weights SRC DST --method models_genesis``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import logging
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from genesis_monai.io_utils import atomic_torch_save

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointLayout",
    "CHECKPOINT_LAYOUTS",
    "ImportReport",
    "GenesisTarget",
    "register_layout",
    "read_checkpoint",
    "checkpoint_provenance",
    "convert_state_dict",
    "match_state_dict",
    "import_checkpoint",
    "load_pretrained_weights",
    "import_weights_cli",
    "MAX_CHANNEL_CHANGE_FRACTION",
]

#: keys under which training scripts nest the weights, tried in this order
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "network", "net", "teacher", "student")

#: the Genesis stem conv: its output channels / 32 is the checkpoint's width
_STEM_KEY = "down_tr64.ops.0.conv1.weight"
_STEM_REFERENCE_CHANNELS = 32

#: wrappers' prefixes removed from both sides before generic matching (DataParallel/DDP, torch.compile)
_GENERIC_STRIP = ("module.", "_orig_mod.")

#: generic rule: tensors left at initialisation by a channel change may hold at most this share of
#: the network's weights (elements of its state dict); beyond it the checkpoint is not "this network"
MAX_CHANNEL_CHANGE_FRACTION = 0.10

_EXAMPLES = 6


# ----------------------------------------------------------------------------------------------
# which rule applies to a target
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenesisTarget:
    """Where the Genesis encoder sits in a target network.

    Attributes:
        prefix: state-dict prefix of the encoder (``""`` for UNet3D, ``"base_model."`` for GenesisClassifier).
        has_decoder: the target also holds ``up_tr*``/``out_tr`` (a full UNet3D); otherwise a
            checkpoint's decoder tensors are dropped as expected extras.
        width: the network's width multiplier.
        name: the network's class name, for messages.
    """

    prefix: str
    has_decoder: bool
    width: float
    name: str


def find_genesis_target(net: nn.Module) -> Optional[GenesisTarget]:
    """The outermost Genesis encoder (UNet3D or GenesisEncoder) inside ``net``, or None."""
    from genesis_monai.networks.unet3d import GenesisEncoder, UNet3D

    for name, module in net.named_modules():  # pre-order: the outermost one comes first
        if isinstance(module, GenesisEncoder):
            return GenesisTarget(prefix=f"{name}." if name else "", has_decoder=isinstance(module, UNet3D),
                                 width=float(module.width), name=type(net).__name__)
    return None


def _never(net: nn.Module) -> bool:
    return False


def _is_genesis_network(net: nn.Module) -> bool:
    return find_genesis_target(net) is not None


def _unet3d_factory() -> nn.Module:
    from genesis_monai.networks import UNet3D

    return UNet3D()


@dataclass(frozen=True)
class CheckpointLayout:
    """How one method's published checkpoint maps onto a target network.

    Attributes:
        name: method name used on the command line (``--method``).
        target: builds the default target network (when :func:`import_checkpoint` gets none).
        applies_to: the layout's rules apply to a target for which this returns True (default: the
            target contains a Genesis encoder); any other target is matched by
            :func:`match_state_dict` (key name and shape).
        strip_prefixes: prefixes removed from every key, repeatedly, in order (e.g. ``module.``).
        fallback_prefixes: prefixes removed from a key only when the key does not match a target
            key as it is (the Semantic Genesis/TransVW releases' ``classficationNet.``).
        drop_substrings: keys containing any of these are dropped silently as expected extras.
        required_prefixes: target keys with these prefixes MUST be filled, else import fails.
        strict: every target key of the layout must be filled (``num_batches_tracked`` may be absent).
        description: one line for help and provenance.
        head: first key component of the layout's pretraining head (``clc_out`` for Semantic
            Genesis/TransVW), kept with ``keep_head=True`` (dropped by default, as fine-tuning wants).
        parts: sub-network prefixes loaded by the *parts* rule (:mod:`genesis_monai.weight_parts`)
            into any target other than the layout's own network (SMART-Net: ``("encoder.",)`` into the
            2D->3D downstream networks) when ``parts_apply_to(target)``; empty for the Genesis layouts.
    """

    name: str
    target: Callable[[], nn.Module] = _unet3d_factory
    applies_to: Callable[[nn.Module], bool] = _is_genesis_network
    strip_prefixes: Tuple[str, ...] = ("module.",)
    fallback_prefixes: Tuple[str, ...] = ()
    drop_substrings: Tuple[str, ...] = ()
    required_prefixes: Tuple[str, ...] = ("down_tr",)
    strict: bool = False
    description: str = ""
    head: Optional[str] = None
    parts: Tuple[str, ...] = ()
    parts_apply_to: Callable[[nn.Module], bool] = _never


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
            head="clc_out",
        )
    )


def _smart_net_factory() -> nn.Module:
    from genesis_monai.networks import SMARTNet

    return SMARTNet()


def _not_smart_net(net: nn.Module) -> bool:
    from genesis_monai.networks import SMARTNet

    return not isinstance(net, SMARTNet)


register_layout(
    CheckpointLayout(
        name="smart_net",
        target=_smart_net_factory,
        applies_to=_never,  # a SMARTNet target: the generic rule (same names and shapes)
        parts_apply_to=_not_smart_net,
        strip_prefixes=("module.",),
        required_prefixes=("encoder.",),
        parts=("encoder.",),
        description="SMART-Net (2022 code) state dict: encoder., classification_head., seg_decoder., "
        "segmentation_head., rec_decoder., reconstruction_head.; downstream networks load the encoder. "
        "(optionally seg_decoder.) part",
    )
)


def with_head(layout: CheckpointLayout) -> CheckpointLayout:
    """``layout`` keeping its pretraining head (``clc_out.*``): the head becomes required, not dropped."""
    if not layout.head:
        raise ValueError(f"method {layout.name!r} has no pretraining head to keep (keep_head applies to "
                         f"{sorted(n for n, l in CHECKPOINT_LAYOUTS.items() if l.head)})")
    marker = f"{layout.head}."
    return dataclasses.replace(layout, drop_substrings=tuple(s for s in layout.drop_substrings if s != marker),
                               required_prefixes=layout.required_prefixes + (marker,))


def head_classes(state: Mapping[str, torch.Tensor], head: str = "clc_out") -> int:
    """Number of classes C of a checkpoint's pattern-classification head (rows of ``<head>.fc1.weight``)."""
    suffix = f"{head}.fc1.weight"
    for key, value in state.items():
        if key == suffix or key.endswith("." + suffix):
            return int(value.shape[0])
    raise ValueError(f"the checkpoint has no {suffix!r}: it holds no {head} classification head "
                     f"(keys like {_abbrev(list(state), 3)})")


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------

Shape = Tuple[int, ...]


@dataclass
class ImportReport:
    """What a conversion matched, in plain words (see :meth:`summary`).

    ``matched``/``missing``/``new_head``/``shape_mismatch`` name target keys; ``unexpected``/``dropped``/
    ``decoder_dropped`` name checkpoint keys.
    """

    source: str
    method: str
    network: str = ""
    rule: str = "layout"
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    decoder_dropped: List[str] = field(default_factory=list)
    new_head: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Shape, Shape]] = field(default_factory=list)
    channel_change: Optional[Tuple[int, int]] = None
    n_target: int = 0

    def summary(self) -> str:
        net = f" {self.network}" if self.network else ""
        lines = [f"{self.source}: matched {len(self.matched)} of {self.n_target} tensors of the target network{net} "
                 f"({self.rule})"]
        if self.missing:
            lines.append(f"  missing in the checkpoint ({len(self.missing)}): {_abbrev(self.missing)}")
        if self.shape_mismatch:
            items = [f"{k} checkpoint {tuple(a)} vs network {tuple(b)}" for k, a, b in self.shape_mismatch]
            how = (f", channel count {self.channel_change[0]} -> {self.channel_change[1]}, left at initialisation"
                   if self.channel_change else ", not loaded")
            lines.append(f"  shape mismatch{how} ({len(items)}): {_abbrev(items)}")
        if self.new_head:
            lines.append(f"  not in the {self.method} layout, left at initialisation ({len(self.new_head)}): "
                         f"{_abbrev(self.new_head)}")
        if self.unexpected:
            lines.append(f"  unused checkpoint keys ({len(self.unexpected)}): {_abbrev(self.unexpected)}")
        if self.dropped:
            lines.append(f"  dropped as expected for {self.method} ({len(self.dropped)}): {_abbrev(self.dropped)}")
        if self.decoder_dropped:
            lines.append(f"  decoder tensors dropped as expected, the network has only the encoder "
                         f"({len(self.decoder_dropped)}): {_abbrev(self.decoder_dropped)}")
        return "\n".join(lines)


def _abbrev(items: Sequence[str], n: int = _EXAMPLES) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _shape_items(mismatch: Sequence[Tuple[str, Shape, Shape]], n: int = 4) -> str:
    return _abbrev([f"{k}: checkpoint {tuple(a)} vs network {tuple(b)}" for k, a, b in mismatch], n)


def _is_counter(key: str) -> bool:
    # old checkpoints may lack the BatchNorm counters; PyTorch's loader tolerates that
    return key.endswith("num_batches_tracked")


# ----------------------------------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------------------------------


def _as_bool(value: Union[bool, int, str], name: str) -> bool:
    """A flag from Python or from the command line (fire passes ``--overwrite true`` as the string 'true')."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _file_kind(path: str) -> str:
    """What a file that torch.load failed on looks like: torch-zip, zip, damaged-zip, pickle, empty or other."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "empty"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                # torch.save's archive holds <name>/data.pkl next to the tensor records
                return "torch-zip" if any(n.endswith("data.pkl") for n in z.namelist()) else "zip"
        except zipfile.BadZipFile:
            return "damaged-zip"
    if head.startswith(b"PK\x03\x04"):
        return "damaged-zip"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # pickle PROTO opcode (legacy torch.save)
        return "pickle"
    return "other"


def _weights_only_reason(err: BaseException) -> Optional[str]:
    """The one line of torch's weights_only refusal that says why (without its 'weights_only=False' hint)."""
    text = str(err)
    if not isinstance(err, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s*Please use|\n\s*\n|$)", text, flags=re.S)
    return " ".join(m.group(1).split()) if m else "unsupported content"


def _read_error(path: str, err: BaseException, trusted: bool) -> ValueError:
    kind = _file_kind(path)
    if kind in ("empty", "other", "zip"):
        with open(path, "rb") as f:
            head = f.read(24)
        what = {"empty": "the file is empty",
                "zip": "a zip archive without the data.pkl that torch.save writes",
                "other": f"neither a torch.save zip archive nor a pickle; it starts with {head!r}"}[kind]
        return ValueError(f"cannot read checkpoint {path}: not a PyTorch checkpoint ({what})")
    if kind == "damaged-zip":
        return ValueError(f"cannot read checkpoint {path}: a damaged PyTorch checkpoint (its zip archive cannot be "
                          "read: truncated or partly copied?); write or copy it again")
    reason = _weights_only_reason(err)
    if reason is not None and not trusted:
        # the file IS a pickle; only the safe unpickler refuses it
        return ValueError(f"cannot read checkpoint {path}: torch.load(weights_only=True) refuses it ({reason}). "
                          "If the file comes from a source you trust, retry with trusted=True (--trusted true).")
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return ValueError(f"cannot read checkpoint {path}: {type(err).__name__}: {first_line}")


def read_checkpoint(path: str, trusted: bool = False) -> Any:
    """Load a checkpoint file with ``torch.load`` on the CPU.

    By default only tensors and plain containers are unpickled (``weights_only=True``). A pickle that
    needs arbitrary unpickling fails with a message suggesting ``trusted=True``; pass it only for
    files from a source you trust. A file that is not a PyTorch checkpoint at all (text, an empty
    or damaged file) says so.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a folder, or the file cannot be read (the message says why).
    """
    trusted = _as_bool(trusted, "trusted")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a folder, expected a checkpoint file (e.g. {os.path.join(path, 'model.pt')})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises many types for bad, unsafe or foreign files
        raise _read_error(path, err, trusted) from err


def checkpoint_provenance(ckpt: Any) -> Dict[str, Any]:
    """The ``provenance`` record saved beside the weights (CheckpointSaver / import-weights), else ``{}``."""
    prov = ckpt.get("provenance") if isinstance(ckpt, Mapping) else None
    return dict(prov) if isinstance(prov, Mapping) else {}


def _recorded_network_class(provenance: Mapping[str, Any]) -> Optional[str]:
    net = provenance.get("network")
    if isinstance(net, Mapping) and isinstance(net.get("class"), str):
        return net["class"]
    return net if isinstance(net, str) else None


def _same_class(recorded: str, net_name: str) -> bool:
    # provenance writes a dotted path (monai.networks.nets.basic_unet.BasicUNet); compare the class name
    return recorded.rsplit(".", 1)[-1] == net_name


def _provenance_note(provenance: Mapping[str, Any], net_name: str) -> str:
    recorded = _recorded_network_class(provenance)
    if recorded is None:
        return ""
    if not _same_class(recorded, net_name):
        return (f" The checkpoint's provenance says it was written by network class {recorded!r}, "
                f"but the target network is {net_name!r}: fine-tune the same network that was pretrained.")
    args = provenance.get("network", {}).get("args") if isinstance(provenance.get("network"), Mapping) else None
    return (f" The checkpoint comes from the same class {net_name!r}" + (f" built with {args}" if args else "")
            + ": build the target with the same arguments.")


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


def _strip(key: str, prefixes: Sequence[str]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


# ----------------------------------------------------------------------------------------------
# rule 1: published layouts (Genesis targets)
# ----------------------------------------------------------------------------------------------


def _genesis_target_from_state(target_state: Mapping[str, torch.Tensor]) -> Optional[GenesisTarget]:
    # for callers that pass a bare UNet3D state dict instead of a network
    if _STEM_KEY not in target_state:
        return None
    width = target_state[_STEM_KEY].shape[0] / _STEM_REFERENCE_CHANNELS
    return GenesisTarget("", any(k.startswith("up_tr") for k in target_state), width, "UNet3D")


def _width_error(source: str, layout: CheckpointLayout, genesis: GenesisTarget, ckpt_stem: int, net_stem: int,
                 mismatch: Sequence[Tuple[str, Shape, Shape]]) -> ValueError:
    ckpt_width = ckpt_stem / _STEM_REFERENCE_CHANNELS
    return ValueError(
        f"checkpoint {source} does not fit {genesis.name} (width {genesis.width:g}): the checkpoint looks like a "
        f"width-{ckpt_width:g} Genesis network ({_STEM_KEY} has {ckpt_stem} output channels; width = channels / "
        f"{_STEM_REFERENCE_CHANNELS}), the network has {net_stem} (width {genesis.width:g}). The {layout.name!r} "
        f"layout loads only into a network of the checkpoint's width (the published checkpoints are width 1.0): "
        f"build the network with width={ckpt_width:g} (network_def#width), or pretrain at width {genesis.width:g}. "
        f"Shapes that differ ({len(mismatch)}): {_shape_items(mismatch)}"
    )


def convert_state_dict(
    raw: Mapping[str, torch.Tensor],
    layout: CheckpointLayout,
    target_state: Mapping[str, torch.Tensor],
    source: str = "<state dict>",
    genesis: Optional[GenesisTarget] = None,
    provenance: Optional[Mapping[str, Any]] = None,
) -> Tuple["OrderedDict[str, torch.Tensor]", ImportReport]:
    """Map the keys of ``raw`` onto ``target_state``'s keys following ``layout``.

    Args:
        raw: the checkpoint's tensors.
        layout: the method's layout.
        target_state: the target network's state dict.
        source: file name for messages.
        genesis: where the Genesis encoder sits in the target (:func:`find_genesis_target`); by
            default read off ``target_state`` (a bare UNet3D). Target keys outside it (new heads such
            as ``dense_1``) are reported as left at initialisation; for an encoder-only target the
            checkpoint's decoder tensors are dropped as expected.
        provenance: the checkpoint's provenance record, quoted in errors.

    Returns the converted state dict (only keys of the target with matching shapes) and a report.
    Raises ``ValueError`` when the checkpoint's width differs from the network's, or when required
    keys stay unfilled (any key of the layout, for strict layouts).
    """
    from genesis_monai.networks.unet3d import DECODER_STAGES, ENCODER_STAGES

    genesis = genesis or _genesis_target_from_state(target_state)
    if genesis is None:  # a non-Genesis target of a future layout: every target key belongs to the layout
        genesis = GenesisTarget("", True, 1.0, "network")
        canon = {k: k for k in target_state}
    else:
        stages = ENCODER_STAGES + (DECODER_STAGES if genesis.has_decoder else ())
        if layout.head and not any(layout.head + "." in d for d in layout.drop_substrings):
            stages += (layout.head,)
        p = genesis.prefix
        # layout name (what the published file calls it) -> target key
        canon = {k[len(p):]: k for k in target_state if k.startswith(p) and k[len(p):].split(".")[0] in stages}
    report = ImportReport(source=source, method=layout.name, network=genesis.name, n_target=len(target_state),
                          rule=f"{layout.name} layout, width {genesis.width:g}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    ckpt_shapes: Dict[str, Shape] = {}
    for key, value in raw.items():
        if any(s in key for s in layout.drop_substrings):
            report.dropped.append(key)
            continue
        name = _strip(key, layout.strip_prefixes)
        if name not in canon:
            alt = _strip(name, layout.fallback_prefixes)
            if alt in canon and canon[alt] not in out:
                name = alt
        if name not in canon:
            if not genesis.has_decoder and name.split(".")[0] in DECODER_STAGES:
                report.decoder_dropped.append(key)
            else:
                report.unexpected.append(key)
            continue
        ckpt_shapes[name] = tuple(value.shape)
        tkey = canon[name]
        if tuple(value.shape) != tuple(target_state[tkey].shape):
            report.shape_mismatch.append((tkey, tuple(value.shape), tuple(target_state[tkey].shape)))
            continue
        out[tkey] = value
    report.matched = list(out)
    layout_keys = set(canon.values())
    report.missing = [k for k in canon.values() if k not in out and not _is_counter(k)]
    report.new_head = [k for k in target_state if k not in layout_keys and not _is_counter(k)]

    note = _provenance_note(provenance or {}, genesis.name)
    if _STEM_KEY in ckpt_shapes and _STEM_KEY in canon:
        ckpt_stem, net_stem = ckpt_shapes[_STEM_KEY][0], target_state[canon[_STEM_KEY]].shape[0]
        if ckpt_stem != net_stem:
            err = _width_error(source, layout, genesis, ckpt_stem, net_stem, report.shape_mismatch)
            raise ValueError(str(err) + note)
    canon_name = {v: k for k, v in canon.items()}

    def required(k: str) -> bool:
        return layout.strict or canon_name[k].startswith(layout.required_prefixes)

    problems = [k for k in report.missing if required(k)]
    problems += [k for k, _, _ in report.shape_mismatch if required(k)]
    if problems:
        raise ValueError(
            f"checkpoint {source} does not fit method {layout.name!r}: {len(problems)} required tensors unfilled "
            f"or of the wrong shape ({_abbrev(problems)}).{note}\n{report.summary()}"
        )
    return out, report


# ----------------------------------------------------------------------------------------------
# rule 2: any other network (key name and shape)
# ----------------------------------------------------------------------------------------------


def _channel_change(mismatch: Sequence[Tuple[str, Shape, Shape]]) -> Optional[Tuple[int, int]]:
    """(C_checkpoint, C_network) when every mismatch differs only in channel dims (0, 1) by that one pair."""
    pair: Optional[Tuple[int, int]] = None
    for _, a, b in mismatch:
        if len(a) != len(b):
            return None
        for dim, (x, y) in enumerate(zip(a, b)):
            if x == y:
                continue
            if dim > 1 or (pair is not None and (x, y) != pair):
                return None
            pair = (x, y)
    return pair


def match_state_dict(
    raw: Mapping[str, torch.Tensor],
    target_state: Mapping[str, torch.Tensor],
    source: str = "<state dict>",
    network: str = "network",
    method: str = "generic",
    provenance: Optional[Mapping[str, Any]] = None,
    max_channel_change_fraction: float = MAX_CHANNEL_CHANGE_FRACTION,
) -> Tuple["OrderedDict[str, torch.Tensor]", ImportReport]:
    """Match a checkpoint onto any network by key name and shape (the rule for non-Genesis networks).

    Rule, after stripping ``module.`` (and ``_orig_mod.``) from the keys of both sides:

    1. every tensor of the network has a checkpoint tensor of the same name (BatchNorm
       ``num_batches_tracked`` counters may be absent);
    2. every same-named tensor has the same shape, except a *channel change*: tensors whose shapes
       differ only in their channel dimensions (0 and 1), always from the same checkpoint count
       C_ckpt to the same network count C_net (e.g. 1 -> 3 when fine-tuning the restoration-pretrained
       network with 3 output classes, or another number of input channels), holding together at most
       ``max_channel_change_fraction`` (10 %) of the network's weights. Those stay at initialisation
       and are listed in the report.

    Checkpoint tensors the network lacks are listed as unused. A checkpoint breaking rule 1 or 2
    raises ``ValueError`` naming the file, the network class, the counts and examples (and the
    network class recorded in the checkpoint's provenance when it differs).
    """
    rev = {_strip(k, _GENERIC_STRIP): k for k in target_state}  # normalised name -> target key
    report = ImportReport(source=source, method=method, network=network, n_target=len(target_state),
                          rule="generic rule: key name and shape")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    seen = set()
    for key, value in raw.items():
        name = _strip(key, _GENERIC_STRIP)
        if name not in rev or name in seen:
            report.unexpected.append(key)
            continue
        seen.add(name)
        tkey = rev[name]
        if tuple(value.shape) != tuple(target_state[tkey].shape):
            report.shape_mismatch.append((tkey, tuple(value.shape), tuple(target_state[tkey].shape)))
            continue
        out[tkey] = value
    report.matched = list(out)
    report.missing = [k for n, k in rev.items() if n not in seen and not _is_counter(k)]

    reasons = []
    if report.missing:
        reasons.append(f"{len(report.missing)} tensors of the network are missing in the checkpoint "
                       f"(e.g. {_abbrev(report.missing, 4)})")
    if report.shape_mismatch:
        pair = _channel_change(report.shape_mismatch)
        total = sum(v.numel() for v in target_state.values()) or 1
        changed = sum(math.prod(b) for _, _, b in report.shape_mismatch)
        if pair is not None and changed <= max_channel_change_fraction * total:
            report.channel_change = pair
        else:
            why = ("not one consistent channel change" if pair is None else
                   f"a channel change {pair[0]} -> {pair[1]} that would leave {changed / total:.0%} of the weights "
                   f"at initialisation (at most {max_channel_change_fraction:.0%} allowed)")
            reasons.append(f"{len(report.shape_mismatch)} tensors have another shape, {why} "
                           f"(e.g. {_shape_items(report.shape_mismatch)})")
    if reasons:
        unused = (f"; {len(report.unexpected)} checkpoint tensors fit no tensor of the network "
                  f"(e.g. {_abbrev(report.unexpected, 4)})" if report.unexpected else "")
        raise ValueError(
            f"checkpoint {source} does not fit network {network}: {len(report.matched)} of {report.n_target} "
            f"tensors match by name and shape; " + "; ".join(reasons) + unused + "."
            + _provenance_note(provenance or {}, network)
            + " Rule: every tensor of the network must be in the checkpoint with the same shape, except one channel "
            "change of the input/output layers (another number of classes or input channels)."
        )
    recorded = _recorded_network_class(provenance or {})
    if recorded is not None and not _same_class(recorded, network):
        logger.warning("%s: provenance records network class %r, loading into %r (all tensors fit by name and shape)",
                       source, recorded, network)
    return out, report


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------


def import_checkpoint(
    path: str,
    method: str = "models_genesis",
    target: Optional[nn.Module] = None,
    trusted: bool = False,
    return_report: bool = False,
    keep_head: bool = False,
    parts: Optional[Sequence[str]] = None,
):
    """Read a checkpoint and return a state dict for ``target``.

    Args:
        path: checkpoint file (a state dict, or a dict nesting one under ``state_dict``,
            ``model`` ...; keys may carry ``module.``), e.g. a published file or our own
            ``{"model": state_dict, "provenance": {...}}`` pretraining checkpoint.
        method: a key of :data:`CHECKPOINT_LAYOUTS` (``models_genesis``, ``semantic_genesis``, ``transvw``).
        target: the network to fit (default: the layout's target, e.g. ``UNet3D()``). The layout's
            rules apply to Genesis networks (the checkpoint's width must equal the network's); any
            other network is matched by name and shape (:func:`match_state_dict`).
        trusted: allow full unpickling (see :func:`read_checkpoint`).
        return_report: also return the :class:`ImportReport`.
        keep_head: keep the method's pretraining head (``clc_out`` of Semantic Genesis/TransVW) and
            require it: the default target is then
            ``SemanticGenesisNet(cls_classes=<rows of clc_out.fc1>)``, which loads the result with
            ``strict=True`` (to continue pretraining). Without it the head is dropped and the
            encoder-decoder remains (for fine-tuning).
        parts: load only these sub-networks (prefixes such as ``"encoder."``) by the parts rule
            (:func:`genesis_monai.weight_parts.match_parts`); default: the layout's ``parts`` when
            ``target`` is not the layout's own network (SMART-Net's downstream networks).

    Returns:
        ``OrderedDict`` target key -> tensor (and the report when ``return_report``).

    Raises:
        ValueError: unknown method, unreadable file, or a checkpoint that does not fit ``target``.
    """
    if method not in CHECKPOINT_LAYOUTS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(CHECKPOINT_LAYOUTS)}")
    layout = CHECKPOINT_LAYOUTS[method]
    if keep_head:
        layout = with_head(layout)
    ckpt = read_checkpoint(path, trusted=trusted)
    raw = _unwrap(ckpt, path)
    provenance = checkpoint_provenance(ckpt)
    net = target if target is not None else head_target(raw, layout, path) if keep_head else layout.target()
    target_state = net.state_dict()
    if parts is None and layout.parts and layout.parts_apply_to(net):
        parts = layout.parts
    if parts is not None:
        from genesis_monai.weight_parts import match_parts

        state, report = match_parts(raw, target_state, parts, source=path, network=type(net).__name__, method=method,
                                    provenance=provenance)
    elif layout.applies_to(net):
        state, report = convert_state_dict(raw, layout, target_state, source=path, genesis=find_genesis_target(net),
                                           provenance=provenance)
    else:
        state, report = match_state_dict(raw, target_state, source=path, network=type(net).__name__, method=method,
                                         provenance=provenance)
    logger.info(report.summary())
    return (state, report) if return_report else state


def head_target(raw: Mapping[str, torch.Tensor], layout: CheckpointLayout, source: str = "<state dict>") -> nn.Module:
    """The network a checkpoint with its pretraining head loads into: ``SemanticGenesisNet`` of its C and width."""
    from genesis_monai.networks import SemanticGenesisNet

    try:
        classes = head_classes(raw, layout.head or "clc_out")
    except ValueError as err:
        raise ValueError(f"{source}: keep_head=True, but {err}") from None
    stems = [v for k, v in raw.items() if _strip(_strip(k, layout.strip_prefixes), layout.fallback_prefixes) == _STEM_KEY]
    width = stems[0].shape[0] / _STEM_REFERENCE_CHANNELS if stems else 1.0
    return SemanticGenesisNet(cls_classes=classes, width=width)


def _has_head(network: nn.Module, layout: CheckpointLayout) -> bool:
    return bool(layout.head) and any(k.split(".")[0] == layout.head for k in network.state_dict())


def load_pretrained_weights(
    network: nn.Module,
    path: Optional[str],
    method: str = "models_genesis",
    from_scratch: bool = False,
    trusted: bool = False,
    keep_head: Optional[bool] = None,
    parts: Optional[Sequence[str]] = None,
) -> nn.Module:
    """Load pretrained weights into ``network`` loudly; returns ``network``.

    Works for the Genesis networks (published layouts, any width as long as the checkpoint has the
    same) and for any other network fine-tuned from its own restoration pretraining (matched by name
    and shape, see :func:`match_state_dict`). Fine-tuning must never train from scratch by accident
    (ModelsGenesis issue #46): a missing file or a checkpoint that does not fit is an error unless
    ``from_scratch=True``, and the log names the file and how many tensors were loaded.

    ``keep_head`` (default: whether ``network`` has the method's pretraining head, e.g. a
    ``SemanticGenesisNet`` continuing pretraining) loads and requires the ``clc_out`` head too.
    ``parts`` (e.g. ``["encoder.", "seg_decoder."]``) loads only those sub-networks, see
    :func:`import_checkpoint`.
    """
    net_name = type(network).__name__
    if _as_bool(from_scratch, "from_scratch"):
        logger.warning("from_scratch=True: training %s from random initialisation (no pretrained weights).", net_name)
        return network
    if not path or not os.path.isfile(str(path)):
        raise FileNotFoundError(
            f"pretrained weights not found: {path!r}. Pretrain first (configs/training.json), import published "
            "weights with `python -m genesis_monai import-weights SRC DST`, or set from_scratch=true explicitly."
        )
    if keep_head is None:
        keep_head = method in CHECKPOINT_LAYOUTS and _has_head(network, CHECKPOINT_LAYOUTS[method])
    try:
        state, report = import_checkpoint(str(path), method=method, target=network, trusted=trusted,
                                          return_report=True, keep_head=bool(keep_head), parts=parts)
    except ValueError as err:
        raise ValueError(f"{err}\n(To train {net_name} from random initialisation on purpose, set from_scratch=true.)"
                         ) from err
    result = network.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # cannot happen: the state dict was built from the network's own keys
        raise RuntimeError(f"internal error: keys not in {net_name}: {result.unexpected_keys[:_EXAMPLES]}")
    logger.warning("Loaded pretrained weights from %s into %s: %d of %d tensors matched.\n%s", path, net_name,
                   len(report.matched), report.n_target, report.summary())
    return network


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_destination(dst: str, overwrite: bool) -> None:
    if os.path.isdir(dst) or dst.endswith(("/", os.sep)):
        raise ValueError(f"destination {dst} is a folder; give the file to write, e.g. "
                         f"{os.path.join(dst, 'pretrained.pt')}")
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"destination {dst} already exists; pass --overwrite true (overwrite=True) to replace "
                              "it, or choose another file")


def import_weights_cli(src: str, dst: str, method: str = "models_genesis", trusted: bool = False,
                       overwrite: bool = False, keep_head: bool = False) -> str:
    """Convert a published checkpoint SRC into DST (``{"state_dict", "provenance"}``) for our networks.

    DST is written atomically with the usual file permissions; an existing DST is replaced only with
    ``--overwrite true``. Example: ``python -m genesis_monai import-weights Genesis_Chest_CT.pt
    bundles/models_genesis/models/pretrained.pt --method models_genesis``. ``--keep_head true``
    (Semantic Genesis/TransVW) keeps the ``clc_out`` classification head, to continue pretraining.
    """
    from genesis_monai import __version__

    dst = str(dst)
    _check_destination(dst, _as_bool(overwrite, "overwrite"))  # before the (slow) conversion
    if method not in CHECKPOINT_LAYOUTS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(CHECKPOINT_LAYOUTS)}")
    keep = _as_bool(keep_head, "keep_head")
    layout = with_head(CHECKPOINT_LAYOUTS[method]) if keep else CHECKPOINT_LAYOUTS[method]
    trust = _as_bool(trusted, "trusted")
    target = head_target(_unwrap(read_checkpoint(src, trusted=trust), src), layout, src) if keep else layout.target()
    state, report = import_checkpoint(src, method=method, target=target, trusted=trust, return_report=True,
                                      keep_head=keep)
    provenance = {
        "method": method,
        "source_file": os.path.abspath(src),
        "source_sha256": _sha256(src),
        "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "genesis_monai_version": __version__,
        "matched_tensors": len(report.matched),
        "network": {"class": f"{type(target).__module__}.{type(target).__qualname__}",
                    "args": {"width": float(getattr(target, "width", 1.0)),
                             **({"cls_classes": int(target.cls_classes)} if hasattr(target, "cls_classes") else {})}},
    }
    atomic_torch_save({"state_dict": state, "provenance": provenance}, dst)
    print(report.summary())
    print(f"wrote {len(state)} tensors to {dst}")
    return dst
