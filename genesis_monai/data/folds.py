"""Which fold each volume's cubes go to: LUNA16-style fold sub-folders, or volumes dealt round-robin.

Folds. If ``data_dir`` has sub-folders matching ``fold_pattern`` (default ``subset{fold}``, the
LUNA16 layout), each is a fold. Otherwise the volumes (sorted by path) are dealt round-robin over
the folds in :func:`deal_order`: (first training fold, first validation fold, the other folds
ascending) = 0, 5, 1, 2, 3, 4, 6, 7, 8, 9 for the reference split (train 0-4, validation 5-6,
test 7-9), so that two volumes already give one training and one validation fold and ten or more
give the reference proportions 5:2:3.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Sequence, Tuple

from genesis_monai.data.readers import list_volumes

__all__ = ["REFERENCE_SPLITS", "REQUIRED_SPLITS", "fold_regex", "fold_folders", "deal_order", "deal_volumes",
           "assign_folds"]

#: the reference fold -> split rule (LUNA16 subsets): train 0-4, validation 5-6, test 7-9
REFERENCE_SPLITS: Dict[str, Tuple[int, ...]] = {"training": (0, 1, 2, 3, 4), "validation": (5, 6), "test": (7, 8, 9)}
#: splits pretraining cannot do without (when the split mapping names them)
REQUIRED_SPLITS: Tuple[str, ...] = ("training", "validation")


def fold_regex(fold_pattern: str) -> "re.Pattern[str]":
    """A regex matching folder names of ``fold_pattern`` (e.g. ``subset{fold}``), the fold number as group 1."""
    if "{fold}" not in str(fold_pattern):
        raise ValueError(f"fold_pattern must contain '{{fold}}' (e.g. 'subset{{fold}}'), got {fold_pattern!r}")
    head, tail = str(fold_pattern).split("{fold}", 1)
    return re.compile("^" + re.escape(head) + r"(\d+)" + re.escape(tail) + "$")


def fold_folders(data_dir: str, fold_pattern: str = "subset{fold}", exclude: Sequence[str] = ()) -> Dict[int, str]:
    """``{fold: folder}`` for the sub-folders of ``data_dir`` named by ``fold_pattern`` (empty if none)."""
    rx = fold_regex(fold_pattern)
    excluded = {os.path.abspath(e) for e in exclude}
    found = {}
    for name in sorted(os.listdir(data_dir)):
        m = rx.match(name)
        full = os.path.join(data_dir, name)
        if m and os.path.isdir(full) and os.path.abspath(full) not in excluded:
            found[int(m.group(1))] = full
    return dict(sorted(found.items()))


def deal_order(splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS) -> List[int]:
    """Fold order of the round-robin deal: first training fold, first validation fold, then the rest ascending."""
    folds = sorted({int(f) for fs in splits.values() for f in fs})
    first = [int(splits[s][0]) for s in REQUIRED_SPLITS if splits.get(s)]
    return first + [f for f in folds if f not in first]


def deal_volumes(volumes: Sequence[str], splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS) -> Dict[int, List[str]]:
    """``{fold: [volumes]}``: ``volumes`` (in the given order) dealt round-robin in :func:`deal_order`."""
    order = deal_order(splits)
    if not order:
        raise ValueError(f"splits {dict(splits)!r} name no folds to deal volumes into")
    folds: Dict[int, List[str]] = {}
    for i, path in enumerate(volumes):
        folds.setdefault(order[i % len(order)], []).append(path)
    return dict(sorted(folds.items()))


def assign_folds(data_dir: str, fold_pattern: str = "subset{fold}",
                 splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS,
                 exclude: Sequence[str] = ()) -> Tuple[str, Dict[int, List[str]]]:
    """``(layout, {fold: [volume paths]})`` for every volume of ``data_dir``; layout is "subfolders" or "dealt".

    Sub-folders matching ``fold_pattern`` are folds (LUNA16: ``subset0`` .. ``subset9``); otherwise
    the sorted volumes are dealt with :func:`deal_volumes`. Nothing is read: extraction deals only the
    volumes whose headers pass its checks (:func:`genesis_monai.data.extract.extract_cubes_from_folder`).
    """
    folders = fold_folders(data_dir, fold_pattern, exclude)
    if folders:
        return "subfolders", {fold: list_volumes(path, exclude=exclude) for fold, path in folders.items()}
    return "dealt", deal_volumes(list_volumes(data_dir, exclude=exclude), splits)
