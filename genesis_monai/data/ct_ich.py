"""Datalists of head-CT hemorrhage data that users bring: PhysioNet CT-ICH, SMART-Net folders, JSON datalists.

None of these data sets is shipped or downloaded by this package (CT-ICH has a restricted
licence); point :func:`head_ct_datalist` at what you have. Every function returns a list of
entries ``{"id": str, "image": abs path, "label": abs path or None, "hemorrhage": 0 | 1, ...}``
(``hemorrhage`` = the volume holds hemorrhage), checked from the NIfTI headers (nibabel, no voxels
read): the image is a 3D volume (X, Y, Z) and its mask has the same shape. Errors name the path and
what was expected.

Layouts:

* **PhysioNet CT-ICH** ("Computed Tomography Images for Intracranial Hemorrhage Detection and
  Segmentation", Hssayeni et al., v1.3.1), :func:`ct_ich_datalist`. What this relies on (from the
  data set's README and public loaders of it): the zip unpacks to a top folder
  ``computed-tomography-images-for-intracranial-hemorrhage-detection-and-segmentation-1.3.1/``
  holding ``ct_scans/NNN.nii`` (75 scans, patients 049-130 without 059-065, about 30 axial slices
  of 5 mm), ``masks/NNN.nii`` (one binary hemorrhage mask per scan, same name, same shape; values
  may be 0/1 or 0/255: any voxel > 0 counts), ``hemorrhage_diagnosis_raw_ct.csv`` (one row per
  slice, columns ``PatientNumber, SliceNumber, Intraventricular, Intraparenchymal, Subarachnoid,
  Epidural, Subdural, No_Hemorrhage, Fracture_Yes_No``, 0/1 values) and
  ``Patient_demographics.csv`` (not read). ``root`` may be that top folder or the folder holding it;
  ``.nii.gz`` files are accepted as well. A scan without its mask is an error (v1.3.1 has a mask
  for every scan). ``hemorrhage`` comes from the CSV when it lists the patient (any slice with
  ``No_Hemorrhage`` 0), else from the mask's voxels; entries also get ``"hemorrhage_kinds"``
  (sorted lower-case subtype names with any slice marked) when the CSV lists the patient.
* **SMART-Net reference naming** (the 2022 code's sample folders), :func:`smart_net_datalist`: a
  folder of ``<name>_img.nii.gz`` / ``<name>_mask.nii.gz`` pairs (``.nii`` accepted), ``_hemo_``
  or ``_normal_`` in the names (e.g. ``sample2_hemo_img.nii.gz``); normal scans have empty masks.
  Pairs are matched by name, not by sort order; an image without its mask or a mask without its
  image is an error. ``hemorrhage`` comes from the name, else (neither tag) from the mask's voxels.
  Upstream keeps ``train/``, ``valid/``, ``test/`` sub-folders of such pairs.
* **JSON**: a Decathlon-style ``dataset.json`` (e.g. ``write_demo_dataset(dir, phantom="head_ct")``)
  with ``training`` / ``validation`` / ``test`` lists of ``{"image", "label"}`` entries, or a JSON
  list of such entries. Relative paths are relative to the JSON's folder; other fields are kept;
  ``hemorrhage`` is the entry's own (0/1) when given, else from the label's voxels; an entry
  needs at least one of ``label`` and ``hemorrhage``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from genesis_monai.data.readers import read_volume_header

logger = logging.getLogger(__name__)

__all__ = ["head_ct_datalist", "ct_ich_datalist", "smart_net_datalist", "find_ct_ich_root", "check_head_ct_entries",
           "CT_ICH_CSV", "CT_ICH_SUBTYPES", "CT_ICH_TOP_FOLDER", "SMART_NET_SPLIT_FOLDERS"]

#: the CT-ICH v1.3.1 per-slice diagnosis table
CT_ICH_CSV = "hemorrhage_diagnosis_raw_ct.csv"
#: its subtype columns
CT_ICH_SUBTYPES: Tuple[str, ...] = ("Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural", "Subdural")
#: the folder the CT-ICH v1.3.1 zip unpacks to
CT_ICH_TOP_FOLDER = "computed-tomography-images-for-intracranial-hemorrhage-detection-and-segmentation-1.3.1"
#: sub-folders of a SMART-Net-style data folder that hold each split (upstream: train / valid / test)
SMART_NET_SPLIT_FOLDERS: Dict[str, Tuple[str, ...]] = {
    "training": ("train", "training"), "validation": ("valid", "val", "validation"), "test": ("test",)}
_NIFTI = (".nii.gz", ".nii")
_JSON_SPLITS = ("training", "validation", "test")


def _nifti_stem(name: str) -> Optional[Tuple[str, str]]:
    """(stem, suffix) of a NIfTI file name, None for other files."""
    lower = name.lower()
    for suffix in _NIFTI:
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return None


def _volume_shape(path: str, what: str, where: str) -> Optional[Tuple[int, ...]]:
    """Spatial shape of ``path`` from its header; raises unless it is a 3D volume (None: not known cheaply)."""
    header = read_volume_header(path)  # VolumeReadError / MissingReaderError name the file
    if header is None:
        return None
    if len(header.shape) != 3:
        kind = "a 2D image" if len(header.shape) == 2 else f"a {len(header.shape)}D image"
        raise ValueError(f"{where}: {what} {path} has shape {header.shape}: expected a 3D volume (X, Y, Z) of axial "
                         f"slices, got {kind}")
    return header.shape


def check_head_ct_entries(entries: Sequence[Mapping[str, Any]], where: str) -> None:
    """Check each entry's files from their headers: image and label exist, are 3D, and have the same shape.

    ``where`` (the data set's path) starts every message. Raises FileNotFoundError or ValueError.
    """
    for i, entry in enumerate(entries):
        image, label = entry["image"], entry.get("label")
        tag = f"{where}: entry {i} ({entry.get('id', os.path.basename(str(image)))})"
        for what, path in (("image", image), ("label", label)):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"{tag}: {what} file {path} not found")
        image_shape = _volume_shape(image, "image", tag)
        if label is not None:
            label_shape = _volume_shape(label, "mask", tag)
            if image_shape is not None and label_shape is not None and image_shape != label_shape:
                raise ValueError(f"{tag}: mask {label} has shape {label_shape} but its image {image} has shape "
                                 f"{image_shape}; a mask must have its image's (X, Y, Z)")


def _mask_has_foreground(path: str) -> int:
    """1 if any voxel of the mask file is > 0 (reads the voxels), else 0."""
    import nibabel as nib
    import numpy as np

    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception as err:  # nibabel raises many types for a broken file
        raise ValueError(f"mask {path} cannot be read with nibabel: {type(err).__name__}: {err}") from err
    return int(bool(np.any(data > 0)))


# ---- PhysioNet CT-ICH ----------------------------------------------------------------------------------------
def find_ct_ich_root(path: str) -> Optional[str]:
    """The CT-ICH folder holding ``ct_scans/`` at or just below ``path`` (e.g. the zip's top folder), else None."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(os.path.join(path, "ct_scans")):
        return path
    if not os.path.isdir(path):
        return None
    below = sorted(d for d in os.listdir(path)
                   if not d.startswith(".") and os.path.isdir(os.path.join(path, d, "ct_scans")))
    if CT_ICH_TOP_FOLDER in below:
        return os.path.join(path, CT_ICH_TOP_FOLDER)
    return os.path.join(path, below[0]) if len(below) == 1 else None


def _read_diagnosis_csv(path: str) -> Dict[int, Dict[str, Any]]:
    """Per patient number: ``{"hemorrhage": 0|1, "kinds": [...], "slices": n}`` from the per-slice CSV."""
    needed = ("PatientNumber", "No_Hemorrhage") + CT_ICH_SUBTYPES
    out: Dict[int, Dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a BOM would hide the first column
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected the CT-ICH v1.3.1 columns "
                             f"PatientNumber, SliceNumber, {', '.join(CT_ICH_SUBTYPES)}, No_Hemorrhage, "
                             f"Fracture_Yes_No (got {columns})")
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in row.items()}
            try:
                patient = int(float(row["PatientNumber"]))
                none = float(row["No_Hemorrhage"]) != 0
                marked = [k.lower() for k in CT_ICH_SUBTYPES if float(row[k] or 0) != 0]
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {line}: expected numbers in PatientNumber, No_Hemorrhage and the "
                                 f"subtype columns, got {row}") from err
            info = out.setdefault(patient, {"hemorrhage": 0, "kinds": set(), "slices": 0})
            info["slices"] += 1
            info["hemorrhage"] |= int(not none or bool(marked))
            info["kinds"].update(marked)
    for info in out.values():
        info["kinds"] = sorted(info["kinds"])
    return out


def ct_ich_datalist(root: str, hemorrhage_from: str = "auto", check: bool = True) -> List[Dict[str, Any]]:
    """Entries of a PhysioNet CT-ICH v1.3.1 folder (see the module docstring for the layout relied on).

    Args:
        root: the data set's top folder (holding ``ct_scans/``, ``masks/``, the CSV) or its parent.
        hemorrhage_from: ``"auto"`` (the CSV when it lists the patient, else the mask's voxels),
            ``"csv"`` (the CSV must list every patient) or ``"mask"`` (always the mask's voxels).
        check: check every pair from the NIfTI headers (3D, same shape).

    Returns:
        ``[{"id": "049", "image": ".../ct_scans/049.nii", "label": ".../masks/049.nii",
        "hemorrhage": 0|1, "hemorrhage_kinds": [...] (when the CSV lists the patient)}, ...]``
        sorted by id.
    """
    if hemorrhage_from not in ("auto", "csv", "mask"):
        raise ValueError(f"hemorrhage_from must be 'auto', 'csv' or 'mask', got {hemorrhage_from!r}")
    given = os.path.abspath(os.path.expanduser(str(root)))
    found = find_ct_ich_root(given)
    if found is None:
        raise FileNotFoundError(f"{given}: not a CT-ICH folder: expected ct_scans/ (NNN.nii scans), masks/ (NNN.nii) "
                                f"and {CT_ICH_CSV} in it or in its sub-folder {CT_ICH_TOP_FOLDER}/")
    scans_dir, masks_dir = os.path.join(found, "ct_scans"), os.path.join(found, "masks")
    scans = sorted((s for s in (_nifti_stem(n) for n in os.listdir(scans_dir) if not n.startswith(".")) if s),
                   key=lambda s: s[0])
    if not scans:
        raise ValueError(f"{scans_dir} holds no NIfTI scans: expected CT-ICH files such as 049.nii")
    csv_path = os.path.join(found, CT_ICH_CSV)
    diagnosis = _read_diagnosis_csv(csv_path) if hemorrhage_from != "mask" and os.path.isfile(csv_path) else {}
    if hemorrhage_from == "csv" and not diagnosis:
        raise FileNotFoundError(f"{found}: hemorrhage_from='csv' but {CT_ICH_CSV} is missing or empty")
    entries = []
    for stem, suffix in scans:
        image = os.path.join(scans_dir, stem + suffix)
        label = next((os.path.join(masks_dir, stem + s) for s in (suffix,) + _NIFTI
                      if os.path.isfile(os.path.join(masks_dir, stem + s))), None)
        if label is None:
            raise FileNotFoundError(f"{found}: scan {image} has no mask: expected masks/{stem}{suffix} "
                                    f"(CT-ICH v1.3.1 has a mask for every scan)")
        entries.append({"id": stem, "image": image, "label": label})
    if check:
        check_head_ct_entries(entries, found)
    for entry in entries:
        try:
            info = diagnosis.get(int(entry["id"]))
        except ValueError:
            info = None
        if info is None and hemorrhage_from == "csv":
            raise ValueError(f"{csv_path} has no rows for scan {entry['image']} (PatientNumber {entry['id']})")
        if info is None:
            entry["hemorrhage"] = _mask_has_foreground(entry["label"])
            continue
        entry["hemorrhage"], entry["hemorrhage_kinds"] = int(info["hemorrhage"]), list(info["kinds"])
        if check:
            shape = read_volume_header(entry["image"]).shape  # type: ignore[union-attr]
            if shape[2] != info["slices"]:  # a warning only: the mask, not the CSV, is the label
                logger.warning("%s: %d rows for patient %s but scan %s has %d slices", csv_path, info["slices"],
                               entry["id"], entry["image"], shape[2])
    return entries


# ---- SMART-Net naming -------------------------------------------------------------------------------------------
def _smart_net_pairs(folder: str) -> Tuple[List[Tuple[str, str, str]], List[str]]:
    """(stem, image path, mask path) of the pairs in ``folder`` and the masks without an image."""
    images: Dict[str, str] = {}
    masks: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        parsed = _nifti_stem(name)
        if name.startswith(".") or parsed is None:
            continue
        stem = parsed[0]
        if stem.endswith("_img"):
            images[stem[: -len("_img")]] = os.path.join(folder, name)
        elif stem.endswith("_mask"):
            masks[stem[: -len("_mask")]] = os.path.join(folder, name)
    pairs = []
    for stem, image in sorted(images.items()):
        if stem not in masks:
            raise FileNotFoundError(f"{folder}: image {image} has no mask: expected {stem}_mask.nii.gz beside it")
        pairs.append((stem, image, masks[stem]))
    return pairs, sorted(p for s, p in masks.items() if s not in images)


def _split_folders(folder: str) -> Dict[str, str]:
    """The split sub-folders (:data:`SMART_NET_SPLIT_FOLDERS`) present in ``folder``: split -> path."""
    found = {}
    for split, names in SMART_NET_SPLIT_FOLDERS.items():
        for name in names:
            if os.path.isdir(os.path.join(folder, name)):
                found[split] = os.path.join(folder, name)
                break
    return found


def smart_net_datalist(folder: str, check: bool = True) -> List[Dict[str, Any]]:
    """Entries of a folder of SMART-Net-style ``*_img.nii.gz`` / ``*_mask.nii.gz`` pairs (not its sub-folders).

    ``id`` is the name without ``_img.nii.gz`` (e.g. ``sample2_hemo``); ``hemorrhage`` is 1 for
    ``_hemo_`` names, 0 for ``_normal_`` names, else read from the mask. Raises naming the folder
    when it holds no pairs (and its split sub-folders if it has them), an image without its mask, a
    mask without its image, or (``check``) a pair whose headers are not two 3D volumes of one shape.
    """
    folder = os.path.abspath(os.path.expanduser(str(folder)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder (expected *_img.nii.gz / *_mask.nii.gz pairs)")
    pairs, orphans = _smart_net_pairs(folder)
    if orphans:
        raise FileNotFoundError(f"{folder}: mask {orphans[0]} has no image: expected "
                                f"{os.path.basename(orphans[0]).replace('_mask.', '_img.')} beside it")
    if not pairs:
        subs = _split_folders(folder)
        hint = (f" (its sub-folders {', '.join(sorted(os.path.basename(p) for p in subs.values()))} may: pass one of "
                f"them, or use head_ct_datalist(folder, split=...))") if subs else ""
        raise ValueError(f"{folder}: no volumes found: expected SMART-Net-style pairs <name>_img.nii.gz / "
                         f"<name>_mask.nii.gz{hint}")
    entries = [{"id": stem, "image": image, "label": mask} for stem, image, mask in pairs]
    if check:
        check_head_ct_entries(entries, folder)
    for entry in entries:
        name = os.path.basename(entry["image"])
        hemo, normal = "_hemo_" in name, "_normal_" in name
        entry["hemorrhage"] = int(hemo) if hemo != normal else _mask_has_foreground(entry["label"])
    return entries


# ---- JSON datalists ---------------------------------------------------------------------------------------------
def _json_entries(path: str, split: Optional[str]) -> List[Any]:
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if isinstance(content, list):
        if split is not None:
            raise ValueError(f"{path} is a plain list of entries without splits; split={split!r} cannot be chosen")
        return content
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a Decathlon-style object with 'training'/'validation'/'test' lists or a "
                         f"list of entries, got {type(content).__name__}")
    if split is not None:
        if not isinstance(content.get(split), list):
            raise KeyError(f"{path} has no list {split!r} (keys: {sorted(content)})")
        return content[split]
    keys = [k for k in _JSON_SPLITS if isinstance(content.get(k), list)]
    if not keys:
        raise ValueError(f"{path}: expected 'training'/'validation'/'test' lists of {{'image', 'label'}} entries "
                         f"(keys: {sorted(content)})")
    return [e for k in keys for e in content[k]]


def _hemorrhage_value(value: Any, where: str) -> int:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return int(value)
    raise ValueError(f"{where}: 'hemorrhage' must be 0 or 1, got {value!r}")


def _json_datalist(path: str, split: Optional[str], check: bool) -> List[Dict[str, Any]]:
    base = os.path.dirname(path)
    raw = _json_entries(path, split)
    entries = []
    for i, item in enumerate(raw):
        where = f"{path}: entry {i}" + (f" of {split!r}" if split else "")
        item = {"image": item} if isinstance(item, str) else item  # Decathlon test lists hold plain paths
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise ValueError(f"{where} must be a dict with an 'image' path (one file), got {item!r}")
        label = item.get("label")
        if label is not None and not isinstance(label, str):
            raise ValueError(f"{where}: 'label' must be one file path or null, got {label!r}")
        if label is None and item.get("hemorrhage") is None:
            raise ValueError(f"{where} has neither 'label' nor 'hemorrhage': a head-CT entry needs a mask or a 0/1 "
                             f"volume label")
        image = os.path.normpath(os.path.join(base, item["image"]))
        parsed = _nifti_stem(os.path.basename(image))
        entry: Dict[str, Any] = {"id": str(item.get("id") or (parsed[0] if parsed else os.path.basename(image))),
                                 "image": image,
                                 "label": None if label is None else os.path.normpath(os.path.join(base, label))}
        if item.get("hemorrhage") is not None:
            entry["hemorrhage"] = _hemorrhage_value(item["hemorrhage"], where)
        extras = {k: v for k, v in item.items() if k not in ("id", "image", "label", "hemorrhage")}
        entries.append((entry, extras))
    if not entries:
        raise ValueError(f"{path}: no entries" + (f" in {split!r}" if split else ""))
    if check:
        check_head_ct_entries([e for e, _ in entries], path)
    out = []
    for entry, extras in entries:
        if "hemorrhage" not in entry:  # the label is there (checked above): read its voxels
            entry["hemorrhage"] = _mask_has_foreground(entry["label"])
        out.append({**entry, **extras})
    return out


# ---- one entry point --------------------------------------------------------------------------------------------
def head_ct_datalist(path: str, split: Optional[str] = None, check: bool = True) -> List[Dict[str, Any]]:
    """Entries of head-CT hemorrhage data in any layout of the module docstring.

    ``path`` may be a JSON file (Decathlon ``dataset.json`` or a list of entries), or a folder: one
    holding ``dataset.json`` (e.g. the head-CT demo data) is read through it; else a CT-ICH folder
    (``ct_scans/`` in it or its one sub-folder); else a SMART-Net-style folder of pairs, or of
    ``train/``, ``valid/``, ``test/`` sub-folders of pairs.

    Args:
        path: see above.
        split: ``"training"``, ``"validation"`` or ``"test"``: that list of a Decathlon JSON, or that
            sub-folder of a SMART-Net-style folder; None: every entry (the three lists, the three
            sub-folders). CT-ICH has no splits: a split is refused there.
        check: check every image and mask from the NIfTI headers (3D volumes, same shape).

    Returns:
        ``[{"id", "image", "label", "hemorrhage", ...}, ...]`` with absolute paths, ``label`` None
        for an entry of a JSON datalist without one.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    if split is not None and split not in _JSON_SPLITS:
        raise ValueError(f"split must be one of {list(_JSON_SPLITS)} or None, got {split!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder (expected a CT-ICH folder, a folder of "
                                f"*_img.nii.gz / *_mask.nii.gz pairs, or a dataset.json / datalist JSON)")
    if os.path.isfile(path):
        if not path.lower().endswith(".json"):
            raise ValueError(f"{path}: expected a folder (CT-ICH, SMART-Net-style pairs) or a JSON datalist, got a "
                             f"file that is not .json")
        return _json_datalist(path, split, check)
    if os.path.isfile(os.path.join(path, "dataset.json")):
        return _json_datalist(os.path.join(path, "dataset.json"), split, check)
    ct_ich = find_ct_ich_root(path)
    if ct_ich is not None:
        if split is not None:
            raise ValueError(f"{ct_ich} is a CT-ICH folder, which has no splits; split={split!r} cannot be chosen "
                             f"(call with split=None and split the entries yourself)")
        return ct_ich_datalist(ct_ich, check=check)
    pairs, orphans = _smart_net_pairs(path)
    if pairs or orphans:
        if split is not None:
            raise ValueError(f"{path} holds its pairs directly, without split sub-folders "
                             f"({', '.join(SMART_NET_SPLIT_FOLDERS[split])}); split={split!r} cannot be chosen")
        return smart_net_datalist(path, check=check)
    subs = _split_folders(path)
    if split is not None and split in subs:
        return smart_net_datalist(subs[split], check=check)
    if split is None and subs:
        return [e for k in _JSON_SPLITS if k in subs for e in smart_net_datalist(subs[k], check=check)]
    wanted = f" (no {' / '.join(SMART_NET_SPLIT_FOLDERS[split])} sub-folder for split={split!r})" if split else ""
    raise ValueError(f"{path}: no head-CT volumes found{wanted}: expected a CT-ICH folder (ct_scans/, masks/, "
                     f"{CT_ICH_CSV}), SMART-Net-style <name>_img.nii.gz / <name>_mask.nii.gz pairs (or train/, "
                     f"valid/, test/ sub-folders of them), or a dataset.json")
