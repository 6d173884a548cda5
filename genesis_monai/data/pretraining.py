"""Find (or make) the pretraining cubes a bundle trains on, from whatever ``dataset_dir`` holds.

``dataset_dir`` may hold, in order of preference:

1. ``cubes_datalist.json`` written by ``python -m genesis_monai extract-cubes``;
2. cube files in the reference naming ``bat_{scale}_s_64x64x32_{fold}.npy`` (folds 0-4 train,
   5-6 validation, as published);
3. volumes (NIfTI, MetaImage, DICOM series; e.g. the demo data set): cubes are extracted once
   into ``dataset_dir/cubes_{X}x{Y}x{Z}/`` and reused by later runs.

When ``dataset_dir`` is the demo location and empty, the demo data set is generated first.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

__all__ = ["resolve_pretraining_data", "is_demo_dataset", "DEMO_EXTRACTION"]

#: cube extraction settings that fit the small demo volumes: the reference border of 100 voxels
#: in-plane leaves no room in a 128x128x64 volume, and the reference lung rule (at most 15% dense
#: tissue) rejects most crops of the demo's smaller, vessel-rich lungs
DEMO_EXTRACTION: Dict[str, Any] = {"border": (8, 8, 4), "scale": 16, "lung_max": 0.5}

CUBE_DATALIST = "cubes_datalist.json"


def is_demo_dataset(dataset_dir: str) -> bool:
    """True for the demo location and for any folder holding a demo ``dataset.json`` (key ``genesis_demo``)."""
    from genesis_monai.data.demo import demo_data_dir

    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if dataset_dir == os.path.abspath(demo_data_dir()):
        return True
    try:
        with open(os.path.join(dataset_dir, "dataset.json")) as f:
            return "genesis_demo" in json.load(f)
    except (OSError, ValueError):
        return False


def _has_volumes(folder: str) -> bool:
    exts = (".nii", ".nii.gz", ".mhd", ".dcm", ".nrrd")
    for _, _, files in os.walk(folder):
        if any(f.lower().endswith(exts) for f in files):
            return True
    return False


def resolve_pretraining_data(
    dataset_dir: str,
    cube_shape: Sequence[int] = (64, 64, 32),
    extraction: Optional[Mapping[str, Any]] = None,
    cubes_dir: Optional[str] = None,
    seed: int = 0,
) -> Dict[str, List[dict]]:
    """Return ``{"training": [...], "validation": [...]}`` lists of cube-file records for :class:`CubeDataset`.

    Args:
        dataset_dir: folder with a cube datalist, reference cube files, or volumes (see module doc).
        cube_shape: (X, Y, Z) of cubes to extract from volumes.
        extraction: keyword arguments for :func:`genesis_monai.data.extract.extract_cubes_from_folder`
            (e.g. ``scale``, ``border``, ``modality``); demo data gets :data:`DEMO_EXTRACTION` under these.
        cubes_dir: where extracted cubes go (default ``dataset_dir/cubes_{X}x{Y}x{Z}``).
        seed: extraction seed (deterministic cubes).

    Raises:
        FileNotFoundError / ValueError naming ``dataset_dir`` when nothing usable is found.
    """
    from genesis_monai.data.cube_dataset import find_cube_files, load_cube_datalist
    from genesis_monai.data.datalist import ensure_dataset_dir

    try:
        dataset_dir = ensure_dataset_dir(dataset_dir)  # generates the demo set at the (empty) demo location
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}: expected a folder of cube .npy files (python -m genesis_monai "
                                "extract-cubes) or of CT/MRI volumes") from None
    is_demo = is_demo_dataset(dataset_dir)

    datalist = os.path.join(dataset_dir, CUBE_DATALIST)
    if os.path.isfile(datalist):
        return _splits_from_datalist(datalist, load_cube_datalist)
    found = find_cube_files(dataset_dir)
    if found.get("training"):
        if not found.get("validation"):
            raise ValueError(f"{dataset_dir}: cube files for training but none for validation (folds 5-6 in the "
                             "reference naming bat_*_s_64x64x32_<fold>.npy)")
        logger.info("pretraining on reference-named cube files in %s", dataset_dir)
        return {"training": found["training"], "validation": found["validation"]}
    if not _has_volumes(dataset_dir):
        raise ValueError(f"dataset_dir {dataset_dir!r} holds no cubes_datalist.json, no bat_*_64x64x32_*.npy cube "
                         "files and no volumes (.nii/.nii.gz/.mhd/DICOM)")

    from genesis_monai.data.extract import extract_cubes_from_folder

    shape = tuple(int(s) for s in cube_shape)
    cubes_dir = cubes_dir or os.path.join(dataset_dir, "cubes_{}x{}x{}".format(*shape))
    kwargs: Dict[str, Any] = dict(DEMO_EXTRACTION) if is_demo else {}
    kwargs.update(dict(extraction or {}))
    kwargs.setdefault("crop", shape)
    cube_list = os.path.join(cubes_dir, CUBE_DATALIST)
    if not os.path.isfile(cube_list):
        logger.warning("extracting %s cubes from the volumes in %s into %s (done once; later runs reuse them)",
                       "x".join(map(str, shape)), dataset_dir, cubes_dir)
    extract_cubes_from_folder(dataset_dir, cubes_dir, seed=seed, **kwargs)
    return _splits_from_datalist(cube_list, load_cube_datalist)


def _splits_from_datalist(path: str, loader) -> Dict[str, List[dict]]:
    splits = {split: loader(path, split) for split in ("training", "validation")}
    for split, items in splits.items():
        if not items:
            raise ValueError(f"{path}: the {split!r} list is empty; pretraining needs cubes for training and validation")
    logger.info("pretraining cubes from %s: %d training files, %d validation files", path,
                len(splits["training"]), len(splits["validation"]))
    return splits
