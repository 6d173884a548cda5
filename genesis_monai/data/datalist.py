"""Datalists for fine-tuning and inference: Decathlon-style JSON files, plain folders, the demo set."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from genesis_monai.data.readers import is_volume_file, list_volumes, read_volume_header

logger = logging.getLogger(__name__)

__all__ = ["segmentation_datalist", "inference_inputs", "ensure_dataset_dir", "demo_phantom_for"]


def demo_phantom_for(dataset_dir: str) -> Optional[str]:
    """The phantom whose default demo folder ``dataset_dir`` is (e.g. ``"head_ct"``), else None."""
    from genesis_monai.data.demo import PHANTOMS, demo_data_dir

    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    for name in PHANTOMS:
        if dataset_dir == os.path.abspath(demo_data_dir(name)):
            return name
    return None


def ensure_dataset_dir(dataset_dir: str) -> str:
    """Absolute ``dataset_dir``; generates a phantom's demo data set when it is that phantom's (empty) demo location."""
    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if not (os.path.isdir(dataset_dir) and os.listdir(dataset_dir)):
        phantom = demo_phantom_for(dataset_dir)
        if phantom is not None:
            from genesis_monai.data.demo import write_demo_dataset

            logger.warning("dataset_dir %s is the %s demo location and empty: generating the procedural demo data set.",
                           dataset_dir, phantom)
            write_demo_dataset(dataset_dir, phantom=phantom)
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"dataset_dir {dataset_dir!r} does not exist")
    return dataset_dir


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object with 'training'/'validation' lists, "
                         f"got {type(content).__name__}")
    return content


def _spatial_shape(path: Any) -> Optional[Tuple[int, ...]]:
    """(X, Y, Z) of a volume file from its header (no voxels read); None when not known cheaply.

    Lists of files (multi-channel entries), DICOM series and formats this package does not read
    are not checked here; their loader reports problems.
    """
    if not isinstance(path, str) or not is_volume_file(path):
        return None
    try:
        header = read_volume_header(path)
    except ImportError:  # MissingReaderError: the optional package is missing; LoadImage will say so
        return None
    return None if header is None else header.shape[:3]  # a 4D image (X, Y, Z, channels) vs a 3D label


def segmentation_datalist(
    dataset_dir: str, split: str = "training", datalist_file: str = "dataset.json", n_labeled: Optional[int] = None,
    check_shapes: bool = True,
) -> List[Dict[str, str]]:
    """Image/label pairs of ``split`` from ``dataset_dir/datalist_file`` (Decathlon layout).

    Paths in the JSON are relative to ``dataset_dir`` (resolved by MONAI's
    ``load_decathlon_datalist``). ``n_labeled`` keeps only the first n entries (few-label
    fine-tuning). Raises naming the file/key when something is missing, and, with ``check_shapes``,
    naming both files and both shapes when a label's (X, Y, Z) differs from its image's (read from
    the NIfTI / MetaImage headers, no voxels loaded).
    """
    from monai.data import load_decathlon_datalist

    dataset_dir = ensure_dataset_dir(dataset_dir)
    path = datalist_file if os.path.isabs(datalist_file) else os.path.join(dataset_dir, datalist_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"datalist {path} not found: expected a Decathlon-style JSON with "
                                f"'training'/'validation' lists of {{'image', 'label'}} entries")
    # checked here first: MONAI's loader fails on these with messages that name neither file nor key
    content = _read_json(path)
    if split not in content or not isinstance(content[split], list):
        raise KeyError(f"{path} has no list {split!r} (keys: {sorted(content)})")
    for i, entry in enumerate(content[split]):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise ValueError(f"{path}: entry {i} of {split!r} must be a dict with 'image' and 'label', got {entry!r}")
    entries = load_decathlon_datalist(path, is_segmentation=True, data_list_key=split, base_dir=dataset_dir)
    items = []
    for i, entry in enumerate(entries):
        item = {k: entry[k] for k in ("image", "label")}
        for k, p in item.items():
            for one in p if isinstance(p, list) else [p]:
                if not os.path.exists(one):
                    raise FileNotFoundError(f"{path}: {split}[{i}][{k!r}] points to a missing file {one}")
        items.append(item)
    if n_labeled is not None:
        items = items[: int(n_labeled)]
    if not items:
        raise ValueError(f"{path}: the {split!r} list is empty")
    if check_shapes:
        for i, item in enumerate(items):
            image_shape, label_shape = _spatial_shape(item["image"]), _spatial_shape(item["label"])
            if image_shape is not None and label_shape is not None and image_shape != label_shape:
                raise ValueError(f"{path}: {split}[{i}]: label {item['label']} has shape {label_shape} but image "
                                 f"{item['image']} has shape {image_shape}; a label must have its image's (X, Y, Z)")
    return items


def inference_inputs(input_dir: str, split: Optional[str] = "test", datalist_file: str = "dataset.json") -> List[Dict[str, str]]:
    """``[{"image": path}, ...]`` to segment.

    If ``input_dir`` holds ``datalist_file`` with a ``split`` list, its images are used; otherwise
    the volumes of :func:`genesis_monai.data.readers.list_volumes` directly in ``input_dir``: every
    volume file (NIfTI, MetaImage, NRRD) and every sub-folder holding a DICOM series.
    """
    input_dir = ensure_dataset_dir(input_dir)
    path = os.path.join(input_dir, datalist_file)
    if split and os.path.isfile(path):
        content = _read_json(path)
        if isinstance(content.get(split), list) and content[split]:
            return [{"image": os.path.join(input_dir, e["image"] if isinstance(e, dict) else e)} for e in content[split]]
    items = [{"image": p} for p in list_volumes(input_dir, recursive=False)]
    if not items:
        raise ValueError(f"no volumes found in {input_dir} (looked for .nii/.nii.gz/.mhd/.mha/.nrrd files and "
                         "DICOM series folders)")
    return items
