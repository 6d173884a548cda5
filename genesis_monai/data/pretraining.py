"""Find (or make) the pretraining cubes a bundle trains on, from whatever ``dataset_dir`` holds.

``dataset_dir`` may hold, in order of preference:

1. ``cubes_datalist.json`` written by ``python -m genesis_monai extract-cubes``;
2. cube files in the reference naming ``bat_{scale}_s_64x64x32_{fold}.npy`` (folds 0-4 train,
   5-6 validation, as published);
3. volumes (NIfTI, MetaImage, DICOM series; e.g. the demo data set): cubes are extracted once
   into ``dataset_dir/cubes_{X}x{Y}x{Z}/`` (or the folder given as ``cubes_dir``) and reused by
   later runs.

Bad options (unknown names, a ``cube_shape`` not divisible by ``divisor``) fail before anything is
read or extracted.

When ``dataset_dir`` is the demo location and empty, the demo data set is generated first.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

__all__ = ["resolve_pretraining_data", "is_demo_dataset", "check_cube_shape", "DEMO_EXTRACTION"]

#: cube extraction settings that fit the small demo volumes: the reference border of 100 voxels
#: in-plane leaves no room in a 128x128x64 volume, and the reference lung rule (at most 15% dense
#: tissue) rejects most crops of the demo's smaller, vessel-rich lungs
DEMO_EXTRACTION: Dict[str, Any] = {"border": (8, 8, 4), "scale": 16, "lung_max": 0.5}

CUBE_DATALIST = "cubes_datalist.json"


def is_demo_dataset(dataset_dir: str) -> bool:
    """True for a phantom's demo location and for any folder holding a demo ``dataset.json`` (key ``genesis_demo``)."""
    from genesis_monai.data.datalist import demo_phantom_for

    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if demo_phantom_for(dataset_dir) is not None:
        return True
    try:
        with open(os.path.join(dataset_dir, "dataset.json")) as f:
            return "genesis_demo" in json.load(f)
    except (OSError, ValueError):
        return False


def check_cube_shape(cube_shape: Sequence[int], divisor: int = 1, where: str = "cube_shape") -> Tuple[int, int, int]:
    """``cube_shape`` as a tuple of 3 positive ints, each divisible by ``divisor`` (else ValueError naming it)."""
    divisor = int(divisor)
    if divisor < 1:
        raise ValueError(f"divisor must be an integer >= 1, got {divisor}")
    try:
        shape = tuple(int(s) for s in cube_shape)
        ok = len(shape) == 3 and all(s > 0 and float(s) == float(v) for s, v in zip(shape, cube_shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{where} must be 3 positive integers (X, Y, Z), got {cube_shape!r}")
    if any(s % divisor for s in shape):
        raise ValueError(f"{where} {shape} is not divisible by {divisor} on every axis (the network needs sides "
                         f"divisible by {divisor}, e.g. {tuple(max(divisor, s // divisor * divisor) for s in shape)})")
    return shape  # type: ignore[return-value]


def resolve_pretraining_data(
    dataset_dir: str,
    cube_shape: Sequence[int] = (64, 64, 32),
    extraction: Optional[Mapping[str, Any]] = None,
    cubes_dir: Optional[str] = None,
    seed: int = 0,
    divisor: int = 1,
) -> Dict[str, List[dict]]:
    """Return ``{"training": [...], "validation": [...]}`` lists of cube-file records for :class:`CubeDataset`.

    Args:
        dataset_dir: folder with a cube datalist, reference cube files, or volumes (see module doc).
        cube_shape: (X, Y, Z) of cubes to extract from volumes.
        extraction: fields of :class:`~genesis_monai.data.extraction_options.ExtractionOptions`
            (e.g. ``scale``, ``border``, ``modality``), validated before anything is read; demo data
            gets :data:`DEMO_EXTRACTION` under these. A ``crop`` other than ``cube_shape`` is refused.
        cubes_dir: where cubes extracted from volumes go (default ``dataset_dir/cubes_{X}x{Y}x{Z}``;
            any other folder works, e.g. when ``dataset_dir`` is read-only); later runs reuse them.
        seed: extraction seed (deterministic cubes), unless ``extraction`` sets one.
        divisor: every side of ``cube_shape`` must be divisible by it (8 for the Genesis UNet3D, which
            pools three times); checked before any extraction.

    Raises:
        FileNotFoundError / ValueError naming ``dataset_dir`` when nothing usable is found; ValueError
        for a bad ``cube_shape`` / ``extraction`` before any cube is extracted.
    """
    from genesis_monai.data.cube_dataset import find_cube_files, load_cube_datalist
    from genesis_monai.data.datalist import ensure_dataset_dir
    from genesis_monai.data.extraction_options import ExtractionOptions
    from genesis_monai.data.readers import has_volumes

    shape = check_cube_shape(cube_shape, divisor)
    extraction = dict(extraction or {})
    asked = ExtractionOptions.from_mapping({"seed": seed, **extraction})  # bad options fail before any work
    if "crop" in extraction and asked.crop != shape:
        raise ValueError(f"extraction crop {asked.crop} differs from cube_shape {shape}: set cube_shape only")
    try:
        dataset_dir = ensure_dataset_dir(dataset_dir)  # generates the demo set at the (empty) demo location
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}: expected a folder of cube .npy files (python -m genesis_monai "
                                "extract-cubes) or of CT/MRI volumes") from None
    base = dict(DEMO_EXTRACTION) if is_demo_dataset(dataset_dir) else {}
    options = ExtractionOptions.from_mapping({"seed": seed, **base, **extraction}, crop=shape)

    datalist = os.path.join(dataset_dir, CUBE_DATALIST)
    if os.path.isfile(datalist):
        return _splits_from_datalist(datalist, load_cube_datalist, divisor)
    found = find_cube_files(dataset_dir)
    if found.get("training"):
        if not found.get("validation"):
            raise ValueError(f"{dataset_dir}: cube files for training but none for validation (folds 5-6 in the "
                             "reference naming bat_*_s_64x64x32_<fold>.npy)")
        logger.info("pretraining on reference-named cube files in %s", dataset_dir)
        return {"training": found["training"], "validation": found["validation"]}
    cubes_dir = os.path.abspath(os.path.expanduser(str(cubes_dir))) if cubes_dir else \
        os.path.join(dataset_dir, "cubes_{}x{}x{}".format(*shape))
    if not has_volumes(dataset_dir, exclude=[cubes_dir]):
        raise ValueError(f"dataset_dir {dataset_dir!r} holds no cubes_datalist.json, no bat_*_64x64x32_*.npy cube "
                         "files and no volumes (.nii/.nii.gz/.mhd/.mha/.nrrd/DICOM)")

    from genesis_monai.data.extract import extract_cubes_from_folder

    cube_list = os.path.join(cubes_dir, CUBE_DATALIST)
    if not os.path.isfile(cube_list):
        logger.warning("extracting %s cubes from the volumes in %s into %s (done once; later runs reuse them)",
                       "x".join(map(str, shape)), dataset_dir, cubes_dir)
    extract_cubes_from_folder(dataset_dir, cubes_dir, options)
    return _splits_from_datalist(cube_list, load_cube_datalist, divisor)


def _splits_from_datalist(path: str, loader, divisor: int = 1) -> Dict[str, List[dict]]:
    try:
        with open(path) as f:
            recorded = json.load(f).get("cube_shape")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded is not None:
        check_cube_shape(recorded, divisor, where=f"{path}: cube_shape")
    splits = {split: loader(path, split) for split in ("training", "validation")}
    for split, items in splits.items():
        if not items:
            raise ValueError(f"{path}: the {split!r} list is empty; pretraining needs cubes for training and validation")
    logger.info("pretraining cubes from %s: %d training files, %d validation files", path,
                len(splits["training"]), len(splits["validation"]))
    return splits
