"""Datalists for fine-tuning and inference: Decathlon-style JSON files, plain folders, the demo set."""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

__all__ = ["segmentation_datalist", "inference_inputs", "ensure_dataset_dir"]

VOLUME_PATTERNS = ("*.nii.gz", "*.nii", "*.mhd", "*.nrrd")


def ensure_dataset_dir(dataset_dir: str) -> str:
    """Absolute ``dataset_dir``; generates the demo data set when it is the (empty) demo location."""
    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if not (os.path.isdir(dataset_dir) and os.listdir(dataset_dir)):
        from genesis_monai.data.demo import demo_data_dir, write_demo_dataset

        if dataset_dir == os.path.abspath(demo_data_dir()):
            logger.warning("dataset_dir %s is the demo location and empty: generating the procedural demo data set.",
                           dataset_dir)
            write_demo_dataset(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"dataset_dir {dataset_dir!r} does not exist")
    return dataset_dir


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def segmentation_datalist(
    dataset_dir: str, split: str = "training", datalist_file: str = "dataset.json", n_labeled: Optional[int] = None
) -> List[Dict[str, str]]:
    """Image/label pairs of ``split`` from ``dataset_dir/datalist_file`` (Decathlon layout).

    Paths in the JSON are relative to ``dataset_dir``. ``n_labeled`` keeps only the first n
    entries (few-label fine-tuning). Raises naming the file/key when something is missing.
    """
    dataset_dir = ensure_dataset_dir(dataset_dir)
    path = datalist_file if os.path.isabs(datalist_file) else os.path.join(dataset_dir, datalist_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"datalist {path} not found: expected a Decathlon-style JSON with "
                                f"'training'/'validation' lists of {{'image', 'label'}} entries")
    content = _read_json(path)
    if split not in content or not isinstance(content[split], list):
        raise KeyError(f"{path} has no list {split!r} (keys: {sorted(content)})")
    items = []
    for i, entry in enumerate(content[split]):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise ValueError(f"{path}: entry {i} of {split!r} must be a dict with 'image' and 'label', got {entry!r}")
        item = {k: os.path.join(dataset_dir, entry[k]) for k in ("image", "label")}
        for k, p in item.items():
            if not os.path.exists(p):
                raise FileNotFoundError(f"{path}: {split}[{i}][{k!r}] points to a missing file {p}")
        items.append(item)
    if n_labeled is not None:
        items = items[: int(n_labeled)]
    if not items:
        raise ValueError(f"{path}: the {split!r} list is empty")
    return items


def inference_inputs(input_dir: str, split: Optional[str] = "test", datalist_file: str = "dataset.json") -> List[Dict[str, str]]:
    """``[{"image": path}, ...]`` to segment.

    If ``input_dir`` holds ``datalist_file`` with a ``split`` list, its images are used; otherwise
    every volume file (NIfTI, MetaImage, NRRD) in ``input_dir`` and every sub-folder holding
    DICOM files (one series each) is listed.
    """
    input_dir = ensure_dataset_dir(input_dir)
    path = os.path.join(input_dir, datalist_file)
    if split and os.path.isfile(path):
        content = _read_json(path)
        if isinstance(content.get(split), list) and content[split]:
            return [{"image": os.path.join(input_dir, e["image"] if isinstance(e, dict) else e)} for e in content[split]]
    files = sorted({f for pat in VOLUME_PATTERNS for f in glob.glob(os.path.join(input_dir, pat))})
    series = sorted(
        d for d in glob.glob(os.path.join(input_dir, "*"))
        if os.path.isdir(d) and any(f.lower().endswith(".dcm") for f in os.listdir(d))
    )
    items = [{"image": p} for p in files + series]
    if not items:
        raise ValueError(f"no volumes found in {input_dir} (looked for {', '.join(VOLUME_PATTERNS)} and DICOM folders)")
    return items
