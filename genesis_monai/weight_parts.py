"""The *parts* rule of checkpoint loading: fill named sub-networks of a target from a pretraining checkpoint.

Downstream networks of the 2D methods reuse PART of the pretraining network under the same names
(SMART-Net: the ResNet-50 ``encoder.`` and optionally the ``seg_decoder.``; the per-slice operators
around them are new). The rule, after stripping ``module.`` / ``_orig_mod.`` from checkpoint keys:

1. every target tensor whose name starts with one of ``parts`` must be in the checkpoint with the same
   shape (BatchNorm ``num_batches_tracked`` counters may be absent), else ``ValueError``;
2. a part that matches no checkpoint key at all is an error of its own (the Adam README's loader
   silently loads 0 of 318 keys: never again);
3. target tensors outside the parts stay at initialisation and are listed (``new_head``); checkpoint
   tensors outside the parts are listed as dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch

__all__ = ["match_parts", "normalise_parts"]

def _strip(key: str) -> str:
    from genesis_monai.weights import _GENERIC_STRIP, _strip as strip_prefixes

    return strip_prefixes(key, _GENERIC_STRIP)


def normalise_parts(parts: Any) -> Tuple[str, ...]:
    """``"encoder."`` / ``["encoder", "seg_decoder."]`` -> ``("encoder.", "seg_decoder.")``; ValueError when empty."""
    items = [parts] if isinstance(parts, str) else list(parts or [])
    out = tuple(p if p.endswith(".") else p + "." for p in (str(i).strip() for i in items) if p)
    if not out:
        raise ValueError(f"parts must name at least one sub-network prefix such as 'encoder.', got {parts!r}")
    return out


def match_parts(raw: Mapping[str, torch.Tensor], target_state: Mapping[str, torch.Tensor], parts: Sequence[str],
                source: str = "<state dict>", network: str = "network", method: str = "generic",
                provenance: Optional[Mapping[str, Any]] = None):
    """Fill the ``parts`` of ``target_state`` from ``raw``; returns ``(state dict of target keys, ImportReport)``."""
    from genesis_monai.weights import ImportReport, _abbrev, _is_counter, _provenance_note, _shape_items

    prefixes = normalise_parts(parts)
    ckpt = OrderedDict((_strip(k), (k, v)) for k, v in raw.items())
    report = ImportReport(source=source, method=method, network=network, n_target=len(target_state),
                          rule=f"parts {', '.join(prefixes)}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for tkey, tval in target_state.items():
        name = _strip(tkey)
        if not name.startswith(prefixes):
            if not _is_counter(tkey):
                report.new_head.append(tkey)
            continue
        if name not in ckpt:
            if not _is_counter(tkey):
                report.missing.append(tkey)
            continue
        value = ckpt[name][1]
        if tuple(value.shape) != tuple(tval.shape):
            report.shape_mismatch.append((tkey, tuple(value.shape), tuple(tval.shape)))
            continue
        out[tkey] = value
    report.matched = list(out)
    report.dropped = [orig for name, (orig, _) in ckpt.items() if not name.startswith(prefixes)]
    note = _provenance_note(provenance or {}, network)
    absent = [p for p in prefixes if not any(_strip(k).startswith(p) for k in target_state)]
    if absent:
        raise ValueError(f"{network} has no parameters under {absent} (its parts: "
                         f"{sorted({_strip(k).split('.', 1)[0] + '.' for k in target_state})}); check parts")
    empty = [p for p in prefixes if not any(name.startswith(p) for name in ckpt)]
    if empty:
        raise ValueError(f"checkpoint {source} has no tensors under {empty} (its keys look like "
                         f"{_abbrev(list(ckpt), 4)}): nothing of {network}'s {', '.join(prefixes)} would load.{note}")
    reasons = []
    if report.missing:
        reasons.append(f"{len(report.missing)} tensors are missing in the checkpoint (e.g. {_abbrev(report.missing, 4)})")
    if report.shape_mismatch:
        reasons.append(f"{len(report.shape_mismatch)} tensors have another shape (e.g. "
                       f"{_shape_items(report.shape_mismatch)}; another network width?)")
    if reasons:
        raise ValueError(f"checkpoint {source} does not fill {network}'s {', '.join(prefixes)}: "
                         + "; ".join(reasons) + "." + note)
    return out, report
