"""Semantic Genesis / TransVW pattern data: the reference file layout, and a dataset of (cube, class) pairs.

Self-discovery (research/upstream_genesis.md §6.3) writes, per chunk ``k`` of 50 classes and per
resolution ``r`` (1 = the 64x64x32 crop; 2, 3 = the multi-resolution crops):

- ``train_data{r}_vwGen_ex_ref_fold{k}.0.npy`` (n, X, Y, Z) cubes, float64 in [0, 1];
- ``train_label{r}_vwGen_ex_ref_fold{k}.0.npy`` (n, 1) class indices (float64);
- ``val_data1_vwGen_ex_ref_fold{k}.0.npy`` / ``val_label1_...`` for validation (resolution 1 only).

The published ``TransVW_data.zip`` (C = 50, 3 resolutions) is this layout and loads as it is:
:func:`find_pattern_files` lists the files, :class:`PatternDataset` reads them memory-mapped and
keeps the first ``n_classes`` classes (the reference trains on C = 44 of them for Semantic
Genesis), as the reference's row slicing does, but by label, so it does not depend on the number of
instances per class. :func:`write_pattern_files` writes the same layout (atomically).
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from genesis_monai.data.cube_dataset import CubeDataset
from genesis_monai.io_utils import atomic_write_bytes

__all__ = ["PATTERN_FILE", "pattern_file_name", "find_pattern_files", "write_pattern_files", "PatternDataset"]

#: data files of the reference layout: split, resolution, chunk
PATTERN_FILE = re.compile(r"^(train|val)_data(\d+)_vwGen_ex_ref_fold(\d+)\.0\.npy$")

_SPLITS = {"train": "training", "val": "validation"}


def pattern_file_name(split: str, kind: str, resolution: int, part: int) -> str:
    """``train_data1_vwGen_ex_ref_fold1.0.npy`` and friends (``split`` train/val, ``kind`` data/label)."""
    if split not in _SPLITS or kind not in ("data", "label"):
        raise ValueError(f"split must be 'train' or 'val' and kind 'data' or 'label', got {split!r}, {kind!r}")
    return f"{split}_{kind}{int(resolution)}_vwGen_ex_ref_fold{int(part)}.0.npy"


def find_pattern_files(folder: str, resolutions: Optional[Sequence[int]] = None) -> Dict[str, List[Dict[str, Any]]]:
    """``{"training": [...], "validation": [...]}`` records ``{"image", "label", "resolution", "part"}`` in ``folder``.

    Training uses the resolutions in ``resolutions`` (default: all found); validation uses
    resolution 1 only, as the reference. Records are ordered by chunk, then resolution. A data file
    without its label file is an error naming both.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"pattern folder {folder!r} does not exist")
    wanted = None if resolutions is None else {int(r) for r in resolutions}
    out: Dict[str, List[Dict[str, Any]]] = {"training": [], "validation": []}
    for name in sorted(os.listdir(folder)):
        m = PATTERN_FILE.match(name)
        if not m:
            continue
        split, res, part = m.group(1), int(m.group(2)), int(m.group(3))
        if split == "val" and res != 1:
            continue
        if split == "train" and wanted is not None and res not in wanted:
            continue
        label = os.path.join(folder, pattern_file_name(split, "label", res, part))
        if not os.path.isfile(label):
            raise FileNotFoundError(f"{os.path.join(folder, name)} has no label file: expected {label}")
        out[_SPLITS[split]].append({"image": os.path.join(folder, name), "label": label, "resolution": res,
                                    "part": part})
    for records in out.values():
        records.sort(key=lambda r: (r["part"], r["resolution"]))
    return out


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_pattern_files(folder: str, split: str, resolution: int, part: int, cubes: np.ndarray,
                        labels: np.ndarray) -> Dict[str, str]:
    """Write one chunk in the reference layout: cubes (n, X, Y, Z) float64 and labels (n, 1) float64, atomically."""
    cubes, labels = np.asarray(cubes), np.asarray(labels).reshape(-1, 1)
    if cubes.ndim != 4 or len(cubes) != len(labels):
        raise ValueError(f"expected cubes (n, X, Y, Z) and n labels, got {cubes.shape} and {labels.shape[0]} labels")
    paths = {kind: os.path.join(folder, pattern_file_name(split, kind, resolution, part)) for kind in ("data", "label")}
    atomic_write_bytes(paths["data"], _npy_bytes(cubes.astype(np.float64, copy=False)))
    atomic_write_bytes(paths["label"], _npy_bytes(labels.astype(np.float64, copy=False)))
    return paths


class PatternDataset(Dataset):
    """(cube, pattern class) pairs: ``{"image": float32 (1, X, Y, Z) in [0, 1], "label": int64 scalar}``.

    Args:
        data: records ``{"image": cubes.npy, "label": labels.npy}`` (e.g. a split of
            :func:`find_pattern_files`); cube files as :class:`~genesis_monai.data.CubeDataset` reads
            them (memory-mapped, float of any precision), label files (n,) or (n, 1) of class indices.
        n_classes: keep only classes ``0 .. n_classes - 1`` (default: all); it must not exceed the
            classes present.
        check_range: as :class:`CubeDataset`.

    Attributes:
        n_classes: classes kept; ``class_counts``: instances per kept class.
    """

    def __init__(self, data: Sequence[Mapping[str, Any]], n_classes: Optional[int] = None,
                 check_range: bool = True) -> None:
        records = list(data)
        if not records:
            raise ValueError("PatternDataset got no pattern files (an empty datalist split?)")
        for r in records:
            if not isinstance(r, Mapping) or "image" not in r or "label" not in r:
                raise ValueError(f"PatternDataset record must hold 'image' and 'label' paths, got {r!r}")
        self.cubes = CubeDataset([{"image": r["image"]} for r in records], check_range=check_range)
        labels, start = [], 0
        for r, end in zip(records, self.cubes._ends):
            lab = self._read_labels(str(r["label"]))
            if len(lab) != end - start:
                raise ValueError(f"{r['label']} holds {len(lab)} labels but {r['image']} holds {end - start} cubes")
            labels.append(lab)
            start = end
        all_labels = np.concatenate(labels)
        present = int(all_labels.max()) + 1
        if n_classes is None:
            n_classes = present
        if int(n_classes) < 2 or int(n_classes) > present:
            raise ValueError(f"n_classes={n_classes} but the pattern files hold classes 0..{present - 1} "
                             f"({records[0]['image']} ...): choose 2..{present}")
        self.n_classes = int(n_classes)
        self._index = np.flatnonzero(all_labels < self.n_classes)
        self._labels = all_labels[self._index]
        self.class_counts = np.bincount(self._labels, minlength=self.n_classes)
        if (self.class_counts == 0).any():
            missing = np.flatnonzero(self.class_counts == 0).tolist()
            raise ValueError(f"pattern classes {missing[:10]} have no instance in {records[0]['label']} ...")

    @staticmethod
    def _read_labels(path: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pattern label file {path} not found")
        try:
            raw = np.load(path, allow_pickle=False)
        except Exception as err:
            raise ValueError(f"{path} is not a readable .npy label array: {type(err).__name__}: {err}") from err
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.number):
            raise ValueError(f"{path}: expected class indices of shape (n,) or (n, 1), got {raw.shape} {raw.dtype}")
        lab = raw.astype(np.int64)
        if (lab != raw).any() or (lab < 0).any():
            raise ValueError(f"{path}: class indices must be non-negative integers")
        return lab

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        item = self.cubes[int(self._index[index])]
        item["label"] = torch.tensor(int(self._labels[index]), dtype=torch.int64)
        return item
