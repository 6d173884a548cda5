"""Which volume goes where in a transfer comparison: :class:`VolumeSplit`, and the folders each stage reads.

The semi-supervised setting, enforced here rather than trusted:

* ``pool``: unlabeled images for pretraining (many);
* ``labeled``: the few image/label pairs every fine-tune trains on;
* ``validation``: image/label pairs for model selection (best-validation checkpoint, settings);
* ``test``: held-out image/label pairs, scored once at the end.

Validation and test volumes are in neither the pool nor the labeled set (:meth:`VolumeSplit.check`
raises otherwise); the labeled images may be in the pool (their labels are not used there).

Two ways to make a split: :func:`demo_volume_split` (the procedural demo set) and
:func:`dataset_volume_split` (a user's Decathlon-style data set, plus an optional folder of unlabeled
volumes; held-out images found in that folder are left out of pretraining). :func:`write_stage_inputs`
then writes what the bundle configs read: a folder of links to the pool volumes (cube extraction)
and a ``dataset.json`` with the labeled / validation / test lists (fine-tuning and inference).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["VolumeSplit", "demo_volume_split", "dataset_volume_split", "write_stage_inputs", "StageInputs",
           "binary_label_entries"]

Pair = Dict[str, str]


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


@dataclass(frozen=True)
class VolumeSplit:
    """Absolute paths of the volumes of each role (see the module docstring).

    Attributes:
        pool: unlabeled volumes for pretraining (files or DICOM series folders).
        labeled, validation, test: ``{"image", "label"}`` pairs.
        excluded: volumes of the unlabeled folder left out of the pool because they are held-out images.
    """

    pool: Tuple[str, ...]
    labeled: Tuple[Pair, ...]
    validation: Tuple[Pair, ...]
    test: Tuple[Pair, ...]
    excluded: Tuple[str, ...] = field(default=())

    def check(self) -> "VolumeSplit":
        """Raise ValueError when a role is empty or a held-out volume is also training data; returns self."""
        for name in ("pool", "labeled", "validation", "test"):
            if not getattr(self, name):
                raise ValueError(f"the {name} set of the transfer split is empty")
        held = {_real(p["image"]): role for role in ("validation", "test") for p in getattr(self, role)}
        for role, paths in (("pool", self.pool), ("labeled", [p["image"] for p in self.labeled])):
            for path in paths:
                if _real(path) in held:
                    raise ValueError(f"{path} is a {held[_real(path)]} volume and also in the {role} set: held-out "
                                     "volumes must be in neither the pretraining nor the fine-tuning data")
        val = {_real(p["image"]) for p in self.validation}
        both = [p["image"] for p in self.test if _real(p["image"]) in val]
        if both:
            raise ValueError(f"{both[0]} is both a validation and a test volume")
        return self

    def counts(self) -> Dict[str, int]:
        """Volumes per role (and how many were excluded from the pool)."""
        return {"pool": len(self.pool), "labeled": len(self.labeled), "validation": len(self.validation),
                "test": len(self.test), "excluded_from_pool": len(self.excluded)}


def _need(n_available: int, n_labeled: int, n_val: int, n_test: int, where: str) -> None:
    need = n_labeled + n_val + n_test
    if n_available < need:
        raise ValueError(f"{where}: {n_available} labeled volumes, but n_labeled + n_val + n_test = {n_labeled} + "
                         f"{n_val} + {n_test} = {need} are needed")


def demo_volume_split(data_dir: str, n_labeled: int, n_val: int, n_test: int) -> VolumeSplit:
    """Split a demo data set written by :func:`genesis_monai.data.demo.write_demo_dataset` (every volume labeled).

    By index: the last ``n_test`` volumes are the test set, the ``n_val`` before them validation, the
    rest the pretraining pool; the first ``n_labeled`` pool volumes are the labeled set.
    """
    with open(os.path.join(data_dir, "dataset.json")) as f:
        content = json.load(f)
    entries = [e for key in ("training", "validation", "test") for e in content.get(key, [])]
    entries = sorted(({k: os.path.join(data_dir, e[k]) for k in ("image", "label")} for e in entries),
                     key=lambda e: e["image"])
    _need(len(entries), n_labeled, n_val, n_test, data_dir)
    test, val = entries[len(entries) - n_test:], entries[len(entries) - n_test - n_val:len(entries) - n_test]
    pool = entries[:len(entries) - n_test - n_val]
    return VolumeSplit(pool=tuple(e["image"] for e in pool), labeled=tuple(pool[:n_labeled]),
                       validation=tuple(val), test=tuple(test)).check()


def _labeled_entries(dataset_dir: str, datalist_file: str) -> List[Pair]:
    from genesis_monai.data.datalist import segmentation_datalist

    path = datalist_file if os.path.isabs(datalist_file) else os.path.join(dataset_dir, datalist_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: the transfer benchmark needs a Decathlon-style datalist with "
                                "'training' (and optionally 'validation' / 'test') lists of {'image', 'label'} entries")
    with open(path) as f:
        content = json.load(f)
    out: List[Pair] = []
    for key in ("training", "validation", "test"):
        items = content.get(key)
        if isinstance(items, list) and items and all(isinstance(e, dict) and "label" in e for e in items):
            out += segmentation_datalist(dataset_dir, key, datalist_file)
    seen, unique = set(), []
    for e in out:
        if _real(e["image"]) not in seen:
            seen.add(_real(e["image"]))
            unique.append({"image": os.path.abspath(e["image"]), "label": os.path.abspath(e["label"])})
    if not unique:
        raise ValueError(f"{path}: no labeled entries (lists of {{'image', 'label'}}) under 'training', "
                         "'validation' or 'test'")
    return unique


def dataset_volume_split(
    dataset_dir: str,
    unlabeled_dir: Optional[str],
    n_labeled: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    datalist_file: str = "dataset.json",
) -> VolumeSplit:
    """Split a user's data set: labeled pairs from the datalist, unlabeled volumes from ``unlabeled_dir``.

    Every labeled pair of ``dataset_dir/datalist_file`` (its ``training``, ``validation`` and labeled
    ``test`` lists together) is shuffled with ``seed``; the first ``n_test`` are the test set, the next
    ``n_val`` validation, the next ``n_labeled`` the labeled set. The pool is every volume of
    ``unlabeled_dir`` (default: the labeled images that are not held out) except held-out images: those
    are matched by real path, or by file name and size (a copy), and listed in ``excluded``.
    """
    from genesis_monai.data.readers import list_volumes

    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    entries = _labeled_entries(dataset_dir, datalist_file)
    _need(len(entries), n_labeled, n_val, n_test, dataset_dir)
    order = np.random.default_rng(int(seed)).permutation(len(entries))
    shuffled = [entries[i] for i in order]
    test, val = shuffled[:n_test], shuffled[n_test:n_test + n_val]
    rest = shuffled[n_test + n_val:]
    labeled = rest[:n_labeled]
    if unlabeled_dir is None:
        candidates = [e["image"] for e in rest]
    else:
        unlabeled_dir = os.path.abspath(os.path.expanduser(str(unlabeled_dir)))
        if not os.path.isdir(unlabeled_dir):
            raise FileNotFoundError(f"unlabeled_dir {unlabeled_dir!r} does not exist")
        candidates = list_volumes(unlabeled_dir)
        if not candidates:
            raise ValueError(f"unlabeled_dir {unlabeled_dir!r} holds no volumes (.nii/.nii.gz/.mhd/.mha/.nrrd/DICOM)")
    held_real = {_real(e["image"]) for e in test + val}
    held_copy = {(os.path.basename(e["image"]), os.path.getsize(e["image"])) for e in test + val}
    pool, excluded = [], []
    for path in candidates:
        copy = os.path.isfile(path) and (os.path.basename(path), os.path.getsize(path)) in held_copy
        (excluded if _real(path) in held_real or copy else pool).append(path)
    if excluded:
        logger.warning("%d volume(s) of %s are held-out validation/test images: left out of pretraining (%s%s)",
                       len(excluded), unlabeled_dir, ", ".join(os.path.basename(p) for p in excluded[:3]),
                       ", ..." if len(excluded) > 3 else "")
    return VolumeSplit(pool=tuple(pool), labeled=tuple(labeled), validation=tuple(val), test=tuple(test),
                       excluded=tuple(excluded)).check()


def binary_label_entries(entries: Sequence[Pair], out_dir: str, foreground: Optional[Sequence[int]] = None
                         ) -> Tuple[List[Pair], int]:
    """``(entries, n_rewritten)``: the pairs with labels that are 0/1 masks (the bundle's fine-tune is binary).

    A label with other values is written once as a gzipped uint8 NIfTI mask under ``out_dir`` (same
    affine): 1 where the label is in ``foreground`` (default: every value > 0). Labels that are
    already 0/1 (and ``foreground`` None or ``[1]``) are used as they are.
    """
    import nibabel as nib

    from genesis_monai.data.demo.phantom import nifti_gz_bytes
    from genesis_monai.io_utils import atomic_write_bytes

    out, n = [], 0
    wanted = None if foreground is None else sorted({int(v) for v in foreground})
    for entry in entries:
        img = nib.load(entry["label"])
        values = np.asanyarray(img.dataobj)
        uniques = np.unique(values)
        if wanted in (None, [1]) and np.isin(uniques, (0, 1)).all():
            out.append(dict(entry))
            continue
        mask = (values > 0) if wanted is None else np.isin(values, wanted)
        name = os.path.basename(entry["label"]).split(".nii")[0] + "_binary.nii.gz"
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path):
            atomic_write_bytes(path, nifti_gz_bytes(mask.astype(np.uint8), img.affine))
        out.append({"image": entry["image"], "label": path})
        n += 1
    return out, n


@dataclass(frozen=True)
class StageInputs:
    """What the stages read: ``pool_dir`` (links to the pool volumes) and ``labeled_dir`` (its ``dataset.json``)."""

    pool_dir: str
    labeled_dir: str
    datalist: str


def _link(src: str, dst: str) -> None:
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(src, dst)


def write_stage_inputs(split: VolumeSplit, out_dir: str) -> StageInputs:
    """Write ``out_dir/pool`` (symbolic links to the pool volumes) and ``out_dir/labeled/dataset.json``.

    The pool folder holds exactly the pool (a DICOM series becomes a folder of links to its files), so
    cube extraction sees no held-out volume. The datalist lists ``training`` (the labeled set),
    ``validation`` and ``test`` with absolute paths, in the Decathlon layout the bundle configs read.
    Earlier links in ``pool`` are replaced.
    """
    from genesis_monai.io_utils import atomic_write_json

    split.check()
    pool_dir, labeled_dir = os.path.join(out_dir, "pool"), os.path.join(out_dir, "labeled")
    os.makedirs(pool_dir, exist_ok=True)
    for name in os.listdir(pool_dir):  # links of an earlier run (this folder holds nothing else)
        path = os.path.join(pool_dir, name)
        if os.path.islink(path):
            os.remove(path)
        elif os.path.isdir(path) and all(os.path.islink(os.path.join(path, f)) for f in os.listdir(path)):
            for f in os.listdir(path):
                os.remove(os.path.join(path, f))
            os.rmdir(path)
    for i, src in enumerate(split.pool):
        base = os.path.basename(os.path.normpath(src))
        dst = os.path.join(pool_dir, f"{i:05d}_{base}")
        if os.path.isdir(src):  # a DICOM series: a real folder of links (folders of links are not walked)
            os.makedirs(dst, exist_ok=True)
            for f in sorted(os.listdir(src)):
                if os.path.isfile(os.path.join(src, f)):
                    _link(os.path.join(src, f), os.path.join(dst, f))
        else:
            _link(os.path.abspath(src), dst)
    os.makedirs(labeled_dir, exist_ok=True)
    datalist = atomic_write_json(os.path.join(labeled_dir, "dataset.json"), {
        "name": "transfer comparison split",
        "description": "written by genesis_monai.transfer: training = the labeled set; validation selects the "
                       "checkpoint; test is held out (in neither the pretraining pool nor the labeled set)",
        "training": [dict(e) for e in split.labeled],
        "validation": [dict(e) for e in split.validation],
        "test": [dict(e) for e in split.test],
        "numTraining": len(split.labeled), "numValidation": len(split.validation), "numTest": len(split.test),
        "numPool": len(split.pool),
    })
    return StageInputs(pool_dir=pool_dir, labeled_dir=labeled_dir, datalist=datalist)
