"""The rule that keeps config ids shared between configs and bundles identical (used by test_shared_ids.py).

Bundles stay self-contained JSON (MONAI Label, ``ckpt_export`` and the model zoo read one bundle
folder alone), so ids that several configs must agree on are written several times; this check
makes a drifted copy fail CI instead of failing a user:

- within a bundle, every id of :data:`WITHIN_BUNDLE` has one raw value in every config that defines it
  (the network that pretrains is the network that fine-tunes and infers). The one exception:
  ``training.json`` may pretrain a network with extra heads (another ``_target_``, e.g. Semantic
  Genesis' UNet3D + classification head); then every argument the two ``network_def`` share must
  agree (same width, channels), since fine-tuning loads the pretrained encoder-decoder;
- the sliding-window inferer of ``inference.json`` is the one ``train.json`` validates with;
- across bundles, a ``network_def`` with the same ``_target_`` and a sliding-window ``inferer`` are
  written the same way, and every multi-GPU overlay (``multi_gpu_*.json``) has the same content
  apart from its ``_desc_``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

#: ids that must be identical in every config of one bundle that defines them
WITHIN_BUNDLE = ("network_def", "network_width", "use_demo_caps", "demo_caps", "output_activation", "seed",
                 "intensity_preset", "intensity_window", "device", "dataset_dir", "ckpt_dir", "bundle_root")

#: bundles that implement one pipeline under two names: every config file identical except these
#: top-level ids (and metadata.json, which describes each)
SIBLINGS = {("semantic_genesis", "transvw"): ("method", "pretrained_method", "cls_classes", "_desc_")}

#: (config, id) pairs that must hold the same raw value within a bundle
SAME_WITHIN_BUNDLE = ((("inference.json", "inferer"), ("train.json", "validate#inferer")),)

_BASE_CONFIGS = ("training.json", "train.json", "inference.json")


def _get(cfg: Dict[str, Any], id_: str) -> Tuple[bool, Any]:
    node: Any = cfg
    for part in id_.split("#"):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _pretraining_variant(id_: str, file_a: str, a: Any, file_b: str, b: Any) -> bool:
    """A pretraining ``network_def`` with other heads: another ``_target_``, shared arguments equal."""
    if id_ != "network_def" or "training.json" not in (file_a, file_b):
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("_target_") == b.get("_target_"):
        return False
    shared = (set(a) & set(b)) - {"_target_"}
    return bool(shared) and all(a[k] == b[k] for k in shared)


def _load(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def bundle_configs(bundles_dir: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """bundle name -> config file name -> parsed JSON, for every bundle folder with configs/metadata.json."""
    out = {}
    for name in sorted(os.listdir(bundles_dir)):
        cfg_dir = os.path.join(bundles_dir, name, "configs")
        if not os.path.isfile(os.path.join(cfg_dir, "metadata.json")):
            continue
        out[name] = {f: _load(os.path.join(cfg_dir, f)) for f in sorted(os.listdir(cfg_dir)) if f.endswith(".json")}
    return out


def shared_id_drift(bundles_dir: str) -> List[str]:
    """Every place where a shared id differs, as ``"<bundle>/<config>: <id> differs from <bundle>/<config>"``."""
    problems: List[str] = []
    configs = bundle_configs(bundles_dir)
    for bundle, files in configs.items():
        for id_ in WITHIN_BUNDLE:
            seen = [(f, v) for f in _BASE_CONFIGS if f in files for ok, v in [_get(files[f], id_)] if ok]
            for f, v in seen[1:]:
                if v != seen[0][1] and not _pretraining_variant(id_, f, v, seen[0][0], seen[0][1]):
                    problems.append(f"{bundle}/{f}: {id_!r} differs from {bundle}/{seen[0][0]}")
        for (fa, ia), (fb, ib) in SAME_WITHIN_BUNDLE:
            if fa in files and fb in files:
                (oka, va), (okb, vb) = _get(files[fa], ia), _get(files[fb], ib)
                if oka and okb and va != vb:
                    problems.append(f"{bundle}/{fb}: {ib!r} differs from {bundle}/{fa} {ia!r}")
    # across bundles
    by_target: Dict[str, Tuple[str, Any]] = {}
    for bundle, files in configs.items():
        for f in _BASE_CONFIGS:
            ok, net = _get(files.get(f, {}), "network_def")
            if ok and isinstance(net, dict) and "_target_" in net:
                first = by_target.setdefault(net["_target_"], (f"{bundle}/{f}", net))
                if first[1] != net:
                    problems.append(f"{bundle}/{f}: 'network_def' ({net['_target_']}) differs from {first[0]}")
        ok, inferer = _get(files.get("inference.json", {}), "inferer")
        if ok and isinstance(inferer, dict):
            first = by_target.setdefault("inferer:" + str(inferer.get("_target_")), (f"{bundle}/inference.json", inferer))
            if first[1] != inferer:
                problems.append(f"{bundle}/inference.json: 'inferer' differs from {first[0]}")
    for (a, b), allowed in SIBLINGS.items():
        if a in configs and b in configs:
            for f in sorted(set(configs[a]) | set(configs[b])):
                if f == "metadata.json":
                    continue
                ca, cb = configs[a].get(f), configs[b].get(f)
                if ca is None or cb is None:
                    problems.append(f"{b if ca is not None else a}/configs/{f}: missing (sibling of {a if ca is not None else b})")
                    continue
                keys = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k) and k not in allowed)
                if keys:
                    problems.append(f"{b}/{f}: differs from sibling {a}/{f} in {keys} (only {list(allowed)} may)")
    overlays = [(f"{b}/{f}", {k: v for k, v in cfg.items() if k != "_desc_"})
                for b, files in configs.items() for f, cfg in files.items() if f.startswith("multi_gpu_")]
    for name, content in overlays[1:]:
        if content != overlays[0][1]:
            keys = sorted(k for k in set(content) | set(overlays[0][1]) if content.get(k) != overlays[0][1].get(k))
            problems.append(f"{name}: multi-GPU overlay differs from {overlays[0][0]} in {keys}")
    return problems
