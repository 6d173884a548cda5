"""Write a phantom's volumes as a Decathlon-style data set on disk: resumable, atomic, deterministic.

A phantom may add fields of its own to each volume's datalist entry: an ``entry_fields`` attribute
``(index, seed) -> dict`` of JSON values (the head CT's ``{"hemorrhage": 0|1, "hemorrhage_kinds": [...]}``,
see :attr:`~genesis_monai.data.demo.phantom.Phantom.entry_fields`), computed without making the volume.

Split of the written data set (deterministic, by index, :func:`demo_split`): ``max(1, round(n / 6))``
test volumes at the end, as many validation volumes before them, the rest for training; 12
volumes give 8 training / 2 validation / 2 test, 3 volumes give 1 / 1 / 1.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Union

from genesis_monai.data.demo.checks import check_int, check_shape, check_spacing
from genesis_monai.data.demo.chest_ct import CHEST_CT
from genesis_monai.data.demo.head_ct import HEAD_CT
from genesis_monai.data.demo.phantom import Phantom
from genesis_monai.io_utils import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["write_demo_dataset", "demo_data_dir", "demo_split", "PHANTOMS", "DATALIST", "PROGRESS_FILE"]

#: the phantoms ``write_demo_dataset(phantom=...)`` knows by name
PHANTOMS: Dict[str, Phantom] = {p.name: p for p in (CHEST_CT, HEAD_CT)}
#: the data set's datalist, written last
DATALIST = "dataset.json"
#: the parameters of a run in progress (hidden): a rerun with the same parameters resumes
PROGRESS_FILE = ".genesis_demo_params.json"


def demo_data_dir(phantom: Union[str, Phantom] = "chest_ct") -> str:
    """Default folder of a phantom's demo data set.

    The chest CT's: ``$GENESIS_MONAI_DATA`` if set, else ``~/.cache/genesis_monai/demo``. Another
    phantom's: the same path with ``_<name>`` appended (a sibling, e.g.
    ``~/.cache/genesis_monai/demo_head_ct``), so that one data set never lies inside another.
    """
    name = _phantom(phantom).name
    env = os.environ.get("GENESIS_MONAI_DATA")
    base = os.path.abspath(os.path.expanduser(env)) if env else os.path.join(
        os.path.expanduser("~"), ".cache", "genesis_monai", "demo")
    return base if name == CHEST_CT.name else f"{base.rstrip(os.sep)}_{name}"


def demo_split(n_volumes: int) -> Dict[str, List[int]]:
    """Indices of the training / validation / test volumes of an ``n_volumes`` data set (n >= 3).

    ``max(1, round(n / 6))`` test volumes at the end, as many validation volumes before them,
    the rest (at least one) for training.
    """
    n = check_int(n_volumes, "n_volumes", minimum=3)
    n_hold = max(1, int(round(n / 6.0)))
    n_train = n - 2 * n_hold
    return {
        "training": list(range(n_train)),
        "validation": list(range(n_train, n_train + n_hold)),
        "test": list(range(n_train + n_hold, n)),
    }


def _phantom(phantom: Union[str, Phantom]) -> Phantom:
    if isinstance(phantom, Phantom):
        return phantom
    if phantom not in PHANTOMS:
        raise ValueError(f"unknown phantom {phantom!r}; choose one of {sorted(PHANTOMS)}")
    return PHANTOMS[phantom]


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            content = json.load(f)
        return content if isinstance(content, dict) else None
    except (OSError, json.JSONDecodeError):
        return None


def _stale_files(out_dir: str, phantom: Phantom, n_volumes: int) -> List[str]:
    """Files of an earlier data set of ``phantom`` with an index >= ``n_volumes``."""
    pattern = re.compile(re.escape(phantom.file_prefix) + r"_(\d+)" + re.escape(phantom.suffix))
    stale = []
    for sub in ("imagesTr", "labelsTr"):
        folder = os.path.join(out_dir, sub)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            m = pattern.fullmatch(name)
            if m and int(m.group(1)) >= n_volumes:
                stale.append(os.path.join(folder, name))
    return stale


def write_demo_dataset(
    out_dir: Optional[str] = None,
    n_volumes: Optional[int] = None,
    shape: Optional[Sequence[int]] = None,
    spacing: Optional[Sequence[float]] = None,
    seed: int = 0,
    overwrite: bool = False,
    phantom: Union[str, Phantom] = "chest_ct",
) -> str:
    """Write a procedural demo data set (default: the chest-CT phantom) and return the path of its datalist JSON.

    Layout (Medical Segmentation Decathlon style, paths relative to ``out_dir``)::

        out_dir/imagesTr/demo_000.nii.gz   chest CT: int16 HU, (X, Y, Z) = shape, RAS affine with spacing
        out_dir/labelsTr/demo_000.nii.gz   chest CT: uint8 nodule mask (0/1)
        out_dir/dataset.json               "training" / "validation" / "test" lists of
                                           {"image", "label"} (see :func:`demo_split`), plus the
                                           phantom's ``entry_fields`` if it has them

    The head CT (``phantom="head_ct"``) writes ``imagesTr/head_000.nii.gz`` (int16 HU, axial slices
    along Z), ``labelsTr/head_000.nii.gz`` (uint8 hemorrhage mask) and entries with ``"hemorrhage"``
    (0/1) and ``"hemorrhage_kinds"``; 24 volumes of (128, 128, 28) voxels of (1.6, 1.6, 5.0) mm by default.

    Every file is written to a temporary name and renamed into place, ``dataset.json`` last.
    When ``out_dir`` already holds a complete data set made with the same parameters (and
    ``overwrite`` is False) nothing is written. An interrupted run resumes: files already
    written with the same parameters are kept. A data set of the same phantom made with other
    parameters is regenerated (its surplus volumes removed); a ``dataset.json`` that this phantom
    did not write is never replaced unless ``overwrite`` is True.

    Args:
        out_dir: target folder (default: :func:`demo_data_dir`).
        n_volumes: number of volumes (>= 3; default the phantom's, 12 for the chest CT).
        shape: voxels per axis of each volume (default the phantom's, (128, 128, 64) for the chest CT).
        spacing: voxel size in mm per axis (default the phantom's, (2.5, 2.5, 5.0) for the chest CT).
        seed: data-set seed (same seed, same bytes).
        overwrite: regenerate every file even if a complete data set is present.
        phantom: a name of :data:`PHANTOMS` (``"chest_ct"``, ``"head_ct"``) or a
            :class:`~genesis_monai.data.demo.phantom.Phantom`.
    """
    ph = _phantom(phantom)
    out_dir = os.path.abspath(os.path.expanduser(str(out_dir) if out_dir is not None else demo_data_dir()))
    n_volumes = check_int(ph.default_n_volumes if n_volumes is None else n_volumes, "n_volumes", minimum=3)
    shape_t = check_shape(ph.default_shape if shape is None else shape, ph.min_shape)
    spacing_t = check_spacing(ph.default_spacing if spacing is None else spacing, ph.ndim)
    seed = check_int(seed, "seed")
    params = {"version": ph.version, "n_volumes": n_volumes, "shape": list(shape_t),
              "spacing": list(spacing_t), "seed": seed}
    split = demo_split(n_volumes)
    names = [ph.file_name(i) for i in range(n_volumes)]
    files = [{"image": os.path.join("imagesTr", n), **({"label": os.path.join("labelsTr", n)} if ph.labels else {})}
             for n in names]
    datalist_path = os.path.join(out_dir, DATALIST)

    existing = _read_json(datalist_path) if os.path.exists(datalist_path) else None
    ours = isinstance(existing, dict) and isinstance(existing.get("genesis_demo"), dict) \
        and existing["genesis_demo"].get("generator") == ph.generator
    if os.path.exists(datalist_path) and not ours and not overwrite:
        raise FileExistsError(f"{datalist_path} exists and was not written by the {ph.name} demo generator; "
                              f"choose another folder or pass overwrite=True to replace it")
    complete = ours and existing["genesis_demo"].get("params") == params and all(  # type: ignore[index]
        os.path.isfile(os.path.join(out_dir, p)) for entry in files for p in entry.values())
    if complete and not overwrite:
        logger.info("demo data set already complete in %s (%d volumes, shape %s, spacing %s, seed %d): nothing to do",
                    out_dir, n_volumes, shape_t, spacing_t, seed)
        return datalist_path
    if ours and not complete and not overwrite:
        logger.warning("demo data set in %s was made with other parameters (%s) or is incomplete: regenerating "
                       "with %s", out_dir, existing["genesis_demo"].get("params"), params)  # type: ignore[index]

    progress_path = os.path.join(out_dir, PROGRESS_FILE)
    resume = not overwrite and _read_json(progress_path) == params
    os.makedirs(out_dir, exist_ok=True)
    if not resume:
        if ours:  # surplus volumes of an earlier demo data set
            for stale in _stale_files(out_dir, ph, n_volumes):
                os.remove(stale)
        atomic_write_json(progress_path, params)
    affine = ph.affine(shape_t, spacing_t)
    written = kept = 0
    for i, entry in enumerate(files):
        paths = {k: os.path.join(out_dir, rel) for k, rel in entry.items()}
        if resume and all(os.path.isfile(p) for p in paths.values()):
            kept += 1
            continue
        image, label = ph.make(i, shape_t, spacing_t, seed)
        if "label" in paths:  # the label first: an image on disk means its volume is complete
            atomic_write_bytes(paths["label"], ph.encode(label, affine))
        atomic_write_bytes(paths["image"], ph.encode(image, affine))
        written += 1
        logger.info("demo volume %d/%d: %s%s", i + 1, n_volumes, paths["image"],
                    f" ({int(label.sum())} foreground voxels)" if label is not None else "")

    extra = ph.entry_fields  # optional per-volume fields (see the module docstring)

    def entries(key: str) -> List[Dict[str, Any]]:
        return [{**files[i], **(extra(i, seed) if extra is not None else {})} for i in split[key]]

    datalist: Dict[str, Any] = {
        "name": ph.title,
        "description": ph.description,
        "reference": "genesis_monai (synthetic, no patient data)",
        "licence": "CC0-1.0",
        "release": f"generator version {ph.version}",
        "tensorImageSize": f"{ph.ndim}D",
        "modality": dict(ph.modality),
        **({"labels": dict(ph.labels)} if ph.labels else {}),
        "numTraining": len(split["training"]),
        "numValidation": len(split["validation"]),
        "numTest": len(split["test"]),
        "training": entries("training"),
        "validation": entries("validation"),
        "test": entries("test"),
        "genesis_demo": {"generator": ph.generator, "params": params, "split": split, "axes": ph.axes},
    }
    atomic_write_json(datalist_path, datalist)
    logger.info("demo data set in %s: %d volumes written, %d kept (training %d, validation %d, test %d)",
                out_dir, written, kept, len(split["training"]), len(split["validation"]), len(split["test"]))
    return datalist_path
