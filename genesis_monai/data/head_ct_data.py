"""Training / validation / test splits of a head-CT hemorrhage data set, whatever its layout (SMART-Net bundle).

:func:`head_ct_splits` takes a ``dataset_dir`` the way a user has it:

* a Decathlon-style ``dataset.json`` (e.g. the embedded head-CT demo set, generated on first use in
  its default folder): its ``training`` / ``validation`` / ``test`` lists are used as they are;
* a SMART-Net-style folder with ``train/`` ``valid/`` ``test/`` sub-folders: those;
* anything else :func:`genesis_monai.data.ct_ich.head_ct_datalist` reads without splits (PhysioNet
  CT-ICH, a flat folder of ``*_img`` / ``*_mask`` pairs): split here, deterministically for a seed and
  stratified by hemorrhage (positive and negative scans are dealt separately), so every split holds
  both kinds of scan when there are enough.

A missing validation list is carved out of the training list the same way. ``n_labeled`` keeps the
first n training volumes of a seeded, class-interleaved order (few-shot fine-tuning with both classes).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["head_ct_splits", "stratified_split", "interleaved_order"]

SPLITS = ("training", "validation", "test")


def _positive(entry: Dict[str, Any]) -> bool:
    return bool(int(entry.get("hemorrhage", 0) or 0))


def interleaved_order(entries: Sequence[Dict[str, Any]], seed: int = 0) -> List[Dict[str, Any]]:
    """``entries`` in a seeded order that alternates positive and negative scans in their proportion."""
    rng = np.random.default_rng(int(seed))
    groups = [[e for e in entries if _positive(e)], [e for e in entries if not _positive(e)]]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups]
    # place each group's items evenly on [0, 1) and merge: proportions kept at every prefix
    keyed = [((i + 0.5) / len(g), k, e) for k, g in enumerate(groups) for i, e in enumerate(g)]
    return [e for _, _, e in sorted(keyed, key=lambda t: (t[0], t[1]))]


def stratified_split(entries: Sequence[Dict[str, Any]], fractions: Dict[str, float], seed: int = 0
                     ) -> Dict[str, List[Dict[str, Any]]]:
    """Deal ``entries`` into named parts of the given fractions (the first part takes the rest), per class."""
    names = list(fractions)
    out: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
    rng = np.random.default_rng(int(seed))
    for group in ([e for e in entries if _positive(e)], [e for e in entries if not _positive(e)]):
        order = [group[i] for i in rng.permutation(len(group))]
        start = 0
        for name in names[1:]:
            k = int(round(fractions[name] * len(order)))
            if len(order) >= 3 and fractions[name] > 0:
                k = max(1, k)
            out[name] += order[start:start + k]
            start += k
        out[names[0]] += order[start:]
    return out


def _split_folders_present(dataset_dir: str) -> bool:
    from genesis_monai.data.ct_ich import SMART_NET_SPLIT_FOLDERS

    names = [n for group in SMART_NET_SPLIT_FOLDERS.values() for n in group]
    return any(os.path.isdir(os.path.join(dataset_dir, n)) for n in names)


def head_ct_splits(dataset_dir: str, datalist_file: str = "dataset.json", seed: int = 0,
                   n_labeled: Optional[int] = None, validation_fraction: float = 0.2, test_fraction: float = 0.2,
                   check: bool = True, require_labels: bool = True) -> Dict[str, List[Dict[str, Any]]]:
    """``{"training": [...], "validation": [...], "test": [...]}`` entries (``image``, ``label``, ``hemorrhage``).

    Args:
        dataset_dir: the data (see the module docstring); the head-CT demo location is generated when empty.
        datalist_file: name of a Decathlon datalist inside ``dataset_dir``.
        seed: seed of the splits made here and of the ``n_labeled`` order.
        n_labeled: keep only this many training volumes (None: all).
        validation_fraction, test_fraction: of the volumes, for layouts without splits.
        check: check images and masks from their NIfTI headers.
        require_labels: every entry must have a mask (segmentation and SMART-Net's upstream); False
            allows entries with only a ``hemorrhage`` flag (volume classification).

    Entries keep ``id``, ``image``, ``label`` and ``hemorrhage`` only (extra fields such as lists of
    lesion kinds would not collate into batches).

    Raises ValueError when the training split is empty or ``n_labeled`` exceeds it.
    """
    from genesis_monai.data.ct_ich import head_ct_datalist
    from genesis_monai.data.datalist import ensure_dataset_dir

    dataset_dir = ensure_dataset_dir(dataset_dir)
    json_path = os.path.join(dataset_dir, str(datalist_file))
    splits: Dict[str, List[Dict[str, Any]]] = {}
    if os.path.isfile(json_path):
        import json

        with open(json_path) as f:
            keys = json.load(f)
        keys = keys if isinstance(keys, dict) else {}
        for name in SPLITS:
            splits[name] = head_ct_datalist(json_path, split=name, check=check) if keys.get(name) else []
        if not splits["training"] and isinstance(keys, dict) and not any(keys.get(n) for n in SPLITS):
            splits = {}
    elif _split_folders_present(dataset_dir):
        for name in SPLITS:
            try:
                splits[name] = head_ct_datalist(dataset_dir, split=name, check=check)
            except ValueError:
                splits[name] = []
    if not splits:
        entries = head_ct_datalist(json_path if os.path.isfile(json_path) else dataset_dir, check=check)
        splits = stratified_split(entries, {"training": 1.0, "validation": float(validation_fraction),
                                            "test": float(test_fraction)}, seed=seed)
        logger.info("%s has no splits: %d volumes dealt into %d training / %d validation / %d test (seed %d, "
                    "stratified by hemorrhage)", dataset_dir, len(entries), len(splits["training"]),
                    len(splits["validation"]), len(splits["test"]), int(seed))
    elif not splits["validation"] and len(splits["training"]) >= 2:
        carved = stratified_split(splits["training"], {"training": 1.0, "validation": float(validation_fraction)},
                                  seed=seed)
        splits["training"], splits["validation"] = carved["training"], carved["validation"]
    splits = {name: [{k: e[k] for k in ("id", "image", "label", "hemorrhage") if k in e} for e in part]
              for name, part in splits.items()}
    if require_labels:
        unlabeled = [e["image"] for part in splits.values() for e in part if not e.get("label")]
        if unlabeled:
            raise ValueError(f"{dataset_dir}: {len(unlabeled)} volumes have no mask (e.g. {unlabeled[0]}); this "
                             "config trains segmentation and needs a mask for every volume")
    if not splits["training"]:
        raise ValueError(f"{dataset_dir}: no training volumes (splits: "
                         f"{ {k: len(v) for k, v in splits.items()} })")
    if n_labeled is not None:
        n = int(n_labeled)
        if not 1 <= n <= len(splits["training"]):
            raise ValueError(f"n_labeled={n_labeled} but {dataset_dir} has {len(splits['training'])} training volumes")
        splits["training"] = interleaved_order(splits["training"], seed)[:n]
    return splits
