"""Folder-level cube extraction: a folder of CT/MRI volumes -> per-fold cube files + a MONAI datalist.

``python -m genesis_monai extract-cubes --data DIR --save DIR [--scale 32] [--modality ct|mri] ...``

Writes, in ``save_dir``:

* ``bat_{scale}_s_{X}x{Y}x{Z}_{fold}.npy``: float32 (n, X, Y, Z) in [0, 1], one file per fold
  (the name the reference training scripts read);
* ``cubes_datalist.json``: ``{"description", "training": [{"image": "<file>", "fold": k,
  "n_cubes": n}, ...], "validation": [...], "test": [...], "extraction": {settings}}``, paths
  relative to the JSON's folder (MONAI ``load_decathlon_datalist``); written last, so its presence
  means the run finished;
* ``extraction_settings.json``: the settings of the run, checked when a later run resumes.

Folds. If ``data_dir`` has sub-folders matching ``fold_pattern`` (default ``subset{fold}``, the
LUNA16 layout), each is a fold. Otherwise the volumes (sorted by path) are dealt round-robin
over the folds in the order (first training fold, first validation fold, the other folds
ascending) = 0, 5, 1, 2, 3, 4, 6, 7, 8, 9 for the reference split (train 0-4, validation 5-6,
test 7-9): two volumes already give one training and one validation fold, ten or more give the
reference proportions 5:2:3.

Resumable: a fold whose file exists is skipped unless ``overwrite``; files are written to a
temporary file in ``save_dir`` and moved into place with ``os.replace``, so an interrupted run
leaves no half-written ``.npy``. Deterministic: each volume's cubes depend only on ``seed`` and the
volume's path relative to ``data_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from genesis_monai.data.cube_dataset import REFERENCE_SPLITS, cube_file_name, find_cube_files
from genesis_monai.data.cubes import VolumeTooSmallError, corner_ranges, extract_cubes, intensity_window
from genesis_monai.data.readers import MissingReaderError, VolumeReadError, list_volumes, read_volume

logger = logging.getLogger(__name__)

__all__ = [
    "CUBE_DATALIST",
    "SETTINGS_FILE",
    "extract_cubes_from_folder",
    "extract_cubes_cli",
    "assign_folds",
    "format_summary",
    "NpyStreamWriter",
]

CUBE_DATALIST = "cubes_datalist.json"
SETTINGS_FILE = "extraction_settings.json"
_PARTIAL = ".partial"


# --------------------------------------------------------------------------------------------- #
# atomic, streaming .npy writing
# --------------------------------------------------------------------------------------------- #
def _npy_header(shape: Tuple[int, ...], length: Optional[int] = None) -> bytes:
    """A version-1.0 ``.npy`` header for little-endian float32 C-order data of ``shape``.

    magic (6 bytes) + version (2) + header length (2) + dict text padded with spaces + newline;
    ``length`` (total bytes, a multiple of 64) pads it to a fixed size so it can be rewritten in place.
    """
    body = ("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (repr(tuple(shape)),)).encode("latin1")
    if length is None:
        length = int(math.ceil((10 + len(body) + 1) / 64.0)) * 64
    pad = length - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"npy header for shape {shape} does not fit {length} bytes")
    return b"\x93NUMPY\x01\x00" + (length - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


def _npy_header_length(cube_shape: Tuple[int, ...]) -> int:
    return len(_npy_header((10**15,) + tuple(cube_shape)))


class NpyStreamWriter:
    """Append float32 cubes (k, X, Y, Z) to ``path`` without holding a whole fold in memory.

    Data go to a hidden temporary file in the same folder; :meth:`commit` writes the final ``.npy``
    header (its length was reserved up front) and moves the file into place with ``os.replace``
    (atomic on one file system). :meth:`abort` (or an exception inside ``with``) removes it.
    """

    def __init__(self, path: str, cube_shape: Sequence[int]) -> None:
        self.path = path
        self.cube_shape = tuple(int(s) for s in cube_shape)
        self.n = 0
        folder = os.path.dirname(os.path.abspath(path))
        fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=_PARTIAL, dir=folder)
        self._f = os.fdopen(fd, "wb")
        # reserve room for the largest count we could ever write, so the header never grows
        self._header_len = _npy_header_length(self.cube_shape)
        self._f.write(self._header(0))

    def _header(self, n: int) -> bytes:
        return _npy_header((int(n),) + self.cube_shape, self._header_len)

    def append(self, cubes: np.ndarray) -> None:
        cubes = np.ascontiguousarray(cubes, dtype="<f4")
        if cubes.ndim != 4 or tuple(cubes.shape[1:]) != self.cube_shape:
            raise ValueError(f"expected cubes (k, {', '.join(map(str, self.cube_shape))}), got {cubes.shape}")
        self._f.write(cubes.tobytes())
        self.n += int(cubes.shape[0])

    def commit(self) -> str:
        self._f.seek(0)
        self._f.write(self._header(self.n))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.chmod(self.tmp, _default_mode())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self) -> "NpyStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._f.closed:
            self.abort()


def _default_mode() -> int:
    """Permissions a plain ``open()`` would give (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_json_atomic(path: str, content: Mapping[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=_PARTIAL, dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f, indent=2)
            f.write("\n")
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale_partials(save_dir: str) -> None:
    """Temporary files of an interrupted run (ours only: hidden, ``bat_``/datalist prefix, ``.partial``)."""
    for name in os.listdir(save_dir):
        if name.endswith(_PARTIAL) and (name.startswith(".bat_") or name.startswith("." + CUBE_DATALIST)
                                        or name.startswith("." + SETTINGS_FILE)):
            try:
                os.remove(os.path.join(save_dir, name))
            except OSError:
                pass


# --------------------------------------------------------------------------------------------- #
# folds
# --------------------------------------------------------------------------------------------- #
def _fold_regex(fold_pattern: str) -> "re.Pattern[str]":
    if "{fold}" not in fold_pattern:
        raise ValueError(f"fold_pattern must contain '{{fold}}' (e.g. 'subset{{fold}}'), got {fold_pattern!r}")
    head, tail = fold_pattern.split("{fold}", 1)
    return re.compile("^" + re.escape(head) + r"(\d+)" + re.escape(tail) + "$")


def _deal_order(splits: Mapping[str, Sequence[int]]) -> List[int]:
    folds = sorted({int(f) for fs in splits.values() for f in fs})
    first = [int(splits[s][0]) for s in ("training", "validation") if splits.get(s)]
    return first + [f for f in folds if f not in first]


def assign_folds(data_dir: str, fold_pattern: str = "subset{fold}",
                 splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS,
                 exclude: Sequence[str] = ()) -> Tuple[str, Dict[int, List[str]]]:
    """``(layout, {fold: [volume paths]})`` for ``data_dir``; layout is "subfolders" or "dealt".

    Sub-folders matching ``fold_pattern`` are folds (LUNA16: ``subset0`` .. ``subset9``); otherwise
    the sorted volumes are dealt round-robin in the order of :func:`_deal_order` (module doc).
    """
    rx = _fold_regex(fold_pattern)
    subdirs = {}
    for name in sorted(os.listdir(data_dir)):
        m = rx.match(name)
        full = os.path.join(data_dir, name)
        if m and os.path.isdir(full) and os.path.abspath(full) not in {os.path.abspath(e) for e in exclude}:
            subdirs[int(m.group(1))] = full
    if subdirs:
        return "subfolders", {fold: list_volumes(path, exclude=exclude) for fold, path in sorted(subdirs.items())}
    volumes = list_volumes(data_dir, exclude=exclude)
    order = _deal_order(splits)
    folds: Dict[int, List[str]] = {}
    for i, path in enumerate(volumes):
        folds.setdefault(order[i % len(order)], []).append(path)
    return "dealt", dict(sorted(folds.items()))


# --------------------------------------------------------------------------------------------- #
# per-volume work
# --------------------------------------------------------------------------------------------- #
def _range_problem(vol: np.ndarray, modality: str, kwargs: Mapping[str, Any]) -> Optional[str]:
    """A reason to skip when the intensities do not fit the modality, else None."""
    vmin, vmax = float(np.min(vol)), float(np.max(vol))
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        return "contains NaN or infinite values"
    if vmax == vmin:
        return f"constant intensity {vmin:g}"
    mod = modality if modality != "mri" else "mri_" + str(kwargs.get("mri_normalization", "fixed"))
    if mod == "ct" and kwargs.get("window") is None and vmin >= 0:
        return (f"values in [{vmin:g}, {vmax:g}] with nothing below 0: not CT in HU (raw stored values "
                "without RescaleIntercept, or MRI?); use --modality mri or convert to HU")
    if mod == "mri_fixed" and kwargs.get("window") is None and vmin < -500:
        return f"values down to {vmin:g}: looks like CT in HU, not MRI; use --modality ct"
    if mod != "mri_minmax" or kwargs.get("window") is not None:
        lo, hi = intensity_window(vol, mod, **{k: kwargs[k] for k in ("hu_window", "mri_window", "window")
                                               if k in kwargs})
        covered = (min(vmax, hi) - max(vmin, lo)) / (hi - lo)
        if covered < 0.01:
            return (f"values in [{vmin:g}, {vmax:g}] fill {max(covered, 0) * 100:.2g}% of the intensity window "
                    f"[{lo:g}, {hi:g}]: cubes would be blank; check --modality / the window "
                    "(--mri_normalization minmax for MRI in arbitrary units)")
    return None


def _volume_seed(seed: int, rel_path: str) -> np.random.Generator:
    # depends on the volume only (not its position in the folder), so adding files keeps old cubes
    return np.random.default_rng([int(seed), zlib.crc32(rel_path.replace(os.sep, "/").encode("utf-8"))])


def _process_volume(path: str, data_dir: str, scale: int, modality: str, seed: int, spacing, dicom_reader: str,
                    check_range: bool, extract_kwargs: Mapping[str, Any]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """(cubes, None) or (None, reason)."""
    try:
        vol, meta = read_volume(path, spacing=spacing, dicom_reader=dicom_reader)
    except (VolumeReadError, MissingReaderError) as err:
        return None, str(err)
    geometry = {k: extract_kwargs[k] for k in ("crop", "len_depth", "border") if k in extract_kwargs}
    try:
        corner_ranges(vol.shape, **geometry)
    except VolumeTooSmallError as err:
        return None, str(err)
    if check_range:
        problem = _range_problem(vol, modality, extract_kwargs)
        if problem:
            return None, problem
    rel = os.path.relpath(path, data_dir)
    try:
        cubes, info = extract_cubes(vol, scale=scale, modality=modality, seed=_volume_seed(seed, rel),
                                    return_info=True, **extract_kwargs)
    except ValueError as err:  # VolumeTooSmallError included
        return None, str(err)
    if len(cubes) == 0:
        lo, hi = info["score_range"] or (float("nan"), float("nan"))
        if info["rule"] == "lung":
            hint = (f"the least dense candidate scored {lo:.3f} of the cube volume > lung_max "
                    f"{extract_kwargs.get('lung_max', 0.15)}; raise --lung_max, or use --rule tissue/off")
        else:
            hint = (f"the densest candidate scored {hi:.3f} of the cube volume < tissue_min "
                    f"{extract_kwargs.get('tissue_min', 0.5)}; lower --tissue_min or --tissue_threshold, or --rule off")
        return cubes, f"0 cubes: none of {info['tries']} candidates passed the {info['rule']} rule ({hint})"
    return cubes, None


# --------------------------------------------------------------------------------------------- #
# the folder-level entry point
# --------------------------------------------------------------------------------------------- #
def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _validated_options(modality: str, extract_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """All extract_cubes options (defaults filled in: settings compare equal however they were given).

    Bad names or values fail here, once, instead of skipping every volume with the same reason.
    """
    import inspect

    from genesis_monai.data.cubes import MODALITIES, RULES

    sig = inspect.signature(extract_cubes)
    keyword_only = {n: p.default for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(extract_kwargs) - set(keyword_only) | ({"return_info"} & set(extract_kwargs)))
    if unknown:
        known = sorted(set(keyword_only) - {"return_info"})
        raise ValueError(f"unknown cube extraction option(s) {unknown}; known: {known}")
    if str(modality).lower() not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
    options = {k: v for k, v in keyword_only.items() if k not in ("return_info", "method")}
    options.update({k: v for k, v in extract_kwargs.items() if k != "method"})
    if options["rule"] not in RULES:
        raise ValueError(f"unknown rule {options['rule']!r}; choose one of {RULES}")
    if options["mri_normalization"] not in ("fixed", "minmax"):
        raise ValueError(f"mri_normalization must be 'fixed' or 'minmax', got {options['mri_normalization']!r}")
    for key in ("crop", "border"):
        if len(tuple(options[key])) != 3:
            raise ValueError(f"{key} must have 3 entries (X, Y, Z), got {options[key]!r}")
    return _jsonable(dict(sorted(options.items())))


def _n_cubes(path: str) -> int:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return int(arr.shape[0]) if arr.ndim == 4 else 1


def extract_cubes_from_folder(
    data_dir: str,
    save_dir: str,
    scale: int = 32,
    modality: str = "ct",
    fold_pattern: str = "subset{fold}",
    seed: int = 0,
    overwrite: bool = False,
    *,
    folds: Optional[Iterable[int]] = None,
    splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS,
    spacing: Optional[Sequence[float]] = None,
    dicom_reader: str = "auto",
    check_range: bool = True,
    num_workers: int = 0,
    progress: bool = True,
    **extract_kwargs: Any,
) -> Dict[str, Any]:
    """Extract cubes from every volume of ``data_dir`` into per-fold files + ``cubes_datalist.json``.

    Args:
        data_dir: folder of volumes (NIfTI, MetaImage, NRRD, DICOM series folders), flat or in fold
            sub-folders (``fold_pattern``).
        save_dir: output folder (created).
        scale: cubes per volume (32 in the paper).
        modality: "ct", "mri" (fixed window ``mri_window``, default 0..4000) or "mri_minmax".
        fold_pattern: sub-folder name with ``{fold}`` for the fold number ("subset{fold}" = LUNA16).
        seed: extraction seed; the same seed gives the same cubes.
        overwrite: re-extract folds whose file exists (otherwise they are kept: resumable).
        folds: only these folds (default all with volumes).
        splits: fold numbers per split (reference: training 0-4, validation 5-6, test 7-9).
        spacing: resample every volume to this spacing in mm first (default: native grid, as the reference).
        dicom_reader: "auto", "itk" or "pydicom".
        check_range: skip volumes whose intensities do not fit the modality (with the reason).
        num_workers: threads reading/extracting volumes ahead (0 = in the calling thread).
        progress: tqdm progress bars.
        **extract_kwargs: options of :func:`genesis_monai.data.cubes.extract_cubes` (``crop``,
            ``border``, ``rule``, ``lung_max``, ``tissue_threshold_hu``, ``mri_window``, ...).

    Returns:
        summary dict: ``volumes_found``, ``volumes_read``, ``skipped`` ([{"path", "reason"}]),
        ``cubes_written`` ({fold: n}), ``folds_kept`` (existing, not redone), ``files``
        ({fold: path}), ``splits`` ({split: n cubes}), ``datalist``, ``seconds``.

    Raises:
        FileNotFoundError / ValueError naming ``data_dir`` when it holds no volumes or no volume gives
        a cube; ValueError when ``save_dir`` holds cubes made with other settings (use ``overwrite``).
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    t0 = time.perf_counter()
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    save_dir = os.path.abspath(os.path.expanduser(str(save_dir)))
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    scale = int(scale)
    crop = tuple(int(c) for c in extract_kwargs.get("crop", (64, 64, 32)))
    if "crop" in extract_kwargs:
        extract_kwargs["crop"] = crop
    for key in ("border", "hu_window", "mri_window", "window"):
        if extract_kwargs.get(key) is not None:
            extract_kwargs[key] = tuple(extract_kwargs[key])
    splits = {k: tuple(int(f) for f in v) for k, v in dict(splits).items()}
    _fold_regex(fold_pattern)  # validate early
    options = _validated_options(modality, extract_kwargs)

    layout, fold_volumes = assign_folds(data_dir, fold_pattern, splits, exclude=[save_dir])
    n_found = sum(len(v) for v in fold_volumes.values())
    if n_found == 0:
        raise ValueError(f"no volumes found in {data_dir} (looked for .nii/.nii.gz/.mhd/.mha/.nrrd files and "
                         f"DICOM series folders{', in sub-folders ' + fold_pattern if layout == 'subfolders' else ''})")
    if folds is not None:
        wanted = {int(f) for f in (folds if isinstance(folds, Iterable) else [folds])}
        fold_volumes = {f: v for f, v in fold_volumes.items() if f in wanted}

    os.makedirs(save_dir, exist_ok=True)
    _remove_stale_partials(save_dir)
    settings = _jsonable({"scale": scale, "modality": modality, "seed": int(seed), "spacing": spacing,
                          "fold_pattern": fold_pattern, "layout": layout, "splits": splits,
                          "extract": options})
    settings_path = os.path.join(save_dir, SETTINGS_FILE)
    if os.path.isfile(settings_path) and not overwrite:
        with open(settings_path) as f:
            previous = json.load(f)
        if previous != settings:
            diff = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ValueError(f"{save_dir} holds cubes extracted with other settings (differing: {', '.join(diff)}; "
                             f"see {settings_path}): pass overwrite=True (--overwrite) or choose another --save folder")
    _write_json_atomic(settings_path, settings)

    summary: Dict[str, Any] = {"data_dir": data_dir, "save_dir": save_dir, "layout": layout,
                               "volumes_found": n_found, "volumes_read": 0, "skipped": [], "cubes_written": {},
                               "folds_kept": [], "files": {}}
    pool = ThreadPoolExecutor(max_workers=int(num_workers)) if int(num_workers) > 0 else None
    try:
        for fold, volumes in fold_volumes.items():
            out_path = os.path.join(save_dir, cube_file_name(scale, crop, fold))
            if os.path.isfile(out_path) and not overwrite:
                summary["folds_kept"].append(fold)
                summary["files"][fold] = out_path
                continue
            work = lambda p: _process_volume(p, data_dir, scale, modality, seed, spacing,  # noqa: E731
                                             dicom_reader, check_range, extract_kwargs)
            results = pool.map(work, volumes) if pool else map(work, volumes)
            with NpyStreamWriter(out_path, crop) as writer, logging_redirect_tqdm():
                bar = tqdm(zip(volumes, results), total=len(volumes), desc=f"fold {fold}", unit="vol",
                           disable=not progress, leave=False)
                for path, (cubes, reason) in bar:
                    if cubes is not None:
                        summary["volumes_read"] += 1
                        if len(cubes):
                            writer.append(cubes)
                    if reason:
                        summary["skipped"].append({"path": path, "reason": reason})
                        logger.warning("skipped %s: %s", path, reason)
                    bar.set_postfix(cubes=writer.n)
                summary["cubes_written"][fold] = writer.n
                if writer.n:
                    summary["files"][fold] = writer.commit()
                else:
                    writer.abort()  # an empty file would mark the fold done; retry it next run instead
                    logger.warning("fold %d: no cubes from its %d volume(s); no file written", fold, len(volumes))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # the datalist lists every cube file of this cube set in save_dir (kept and new)
    found = find_cube_files(save_dir, scale=scale, shape=crop, splits=splits)
    datalist: Dict[str, Any] = {
        "description": f"Models Genesis pretraining cubes {'x'.join(map(str, crop))} in [0, 1] from {data_dir} "
                       f"({modality}, {scale} per volume), written by genesis_monai extract-cubes",
        "cube_shape": list(crop), "scale": scale, "modality": modality,
    }
    split_counts: Dict[str, int] = {}
    for split in list(splits) + [s for s in found if s not in splits]:
        entries = []
        for rec in found.get(split, []):
            n = _n_cubes(rec["image"])
            if n:
                entries.append({"image": os.path.relpath(rec["image"], save_dir), "fold": rec["fold"], "n_cubes": n})
        datalist[split] = entries
        split_counts[split] = sum(e["n_cubes"] for e in entries)
    datalist["extraction"] = settings
    summary["splits"] = split_counts
    summary["seconds"] = time.perf_counter() - t0
    if sum(split_counts.values()) == 0:
        reasons = "; ".join(f"{os.path.relpath(s['path'], data_dir)}: {s['reason']}" for s in summary["skipped"][:5])
        raise ValueError(f"no cubes could be extracted from the {n_found} volume(s) in {data_dir}"
                         f"{' (' + reasons + ')' if reasons else ''}")
    datalist_path = os.path.join(save_dir, CUBE_DATALIST)
    _write_json_atomic(datalist_path, datalist)
    summary["datalist"] = datalist_path
    if not split_counts.get("validation"):
        logger.warning("%s: no validation cubes (folds %s); pretraining needs some", save_dir,
                       list(splits.get("validation", ())))
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """A human-readable multi-line summary of :func:`extract_cubes_from_folder`'s result."""
    lines = [f"volumes: {summary['volumes_found']} found, {summary['volumes_read']} read, "
             f"{len(summary['skipped'])} skipped or empty"]
    for s in summary["skipped"]:
        lines.append(f"  skipped {s['path']}: {s['reason']}")
    for fold, n in sorted(summary["cubes_written"].items()):
        lines.append(f"  fold {fold}: {n} cubes written" + ("" if n else " (no file)"))
    if summary["folds_kept"]:
        lines.append(f"  folds kept from an earlier run (use --overwrite to redo): {sorted(summary['folds_kept'])}")
    lines.append("cubes per split: " + ", ".join(f"{k} {v}" for k, v in summary.get("splits", {}).items()))
    if summary.get("datalist"):
        lines.append(f"datalist: {summary['datalist']}")
    lines.append(f"time: {summary.get('seconds', 0):.1f} s")
    return "\n".join(lines)


def _triple(value: Any, name: str) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[,x\s]+", value.strip("()[] ")) if v]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} expects numbers like 8,8,4, got {value!r}") from None
    return tuple(int(v) if float(v).is_integer() else v for v in out)


def extract_cubes_cli(
    data: str,
    save: str,
    scale: int = 32,
    modality: str = "ct",
    fold_pattern: str = "subset{fold}",
    seed: int = 0,
    overwrite: bool = False,
    crop: Any = (64, 64, 32),
    border: Any = (100, 100, 30),
    rule: str = "auto",
    lung_max: float = 0.15,
    tissue_threshold_hu: float = -150,
    tissue_threshold: Optional[float] = None,
    tissue_min: float = 0.5,
    hu_window: Any = (-1000, 1000),
    mri_window: Any = (0, 4000),
    mri_normalization: str = "fixed",
    spacing: Any = None,
    folds: Any = None,
    tries_factor: int = 50,
    num_workers: int = 0,
    dicom_reader: str = "auto",
    quiet: bool = False,
) -> None:
    """Cut pretraining cubes out of a folder of CT/MRI volumes (``python -m genesis_monai extract-cubes``).

    Writes ``bat_{scale}_s_{X}x{Y}x{Z}_{fold}.npy`` per fold and ``cubes_datalist.json`` into SAVE;
    prints a summary. Re-running skips folds already written (``--overwrite`` redoes them).

    Args:
        data: folder of volumes (.nii/.nii.gz/.mhd/.nrrd/DICOM series folders), flat or in fold
            sub-folders named by --fold_pattern (LUNA16: subset0 .. subset9).
        save: output folder.
        scale: cubes per volume (32 in the paper).
        modality: ct | mri | mri_minmax.
        fold_pattern: sub-folder name with {fold} (default subset{fold}).
        seed: random seed (same seed, same cubes).
        overwrite: redo folds whose file exists.
        crop: cube size X,Y,Z (64,64,32).
        border: voxels kept from the edges X,Y,Z (100,100,30; e.g. 8,8,4 for small volumes).
        rule: foreground rule: lung (reference, CT) | tissue (keep dense crops) | off | auto.
        lung_max: lung rule: reject crops whose dense score exceeds this fraction (0.15).
        tissue_threshold_hu: dense-voxel threshold in HU (-150).
        tissue_threshold: dense-voxel threshold in normalised [0, 1] units (overrides the HU one).
        tissue_min: tissue rule: reject crops whose dense score is below this fraction.
        hu_window: CT window mapped to [0, 1] (-1000,1000).
        mri_window: MRI clip range (0,4000).
        mri_normalization: fixed (mri_window) | minmax (per image, as the authors advise).
        spacing: resample to this spacing in mm first, e.g. 1,1,1 (default: native, as the reference).
        folds: only these folds, e.g. 0,1,2.
        tries_factor: at most tries_factor * scale candidates per volume (50).
        num_workers: reader threads (0: none).
        dicom_reader: auto | itk | pydicom.
        quiet: no progress bars.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        fold_list = None
        if folds is not None:
            fold_list = [int(f) for f in (_triple(folds, "folds") if not isinstance(folds, int) else [folds])]
        kwargs = dict(crop=_triple(crop, "crop"), border=_triple(border, "border"), rule=rule, lung_max=lung_max,
                      tissue_threshold_hu=tissue_threshold_hu, tissue_threshold=tissue_threshold,
                      tissue_min=tissue_min, hu_window=_triple(hu_window, "hu_window"),
                      mri_window=_triple(mri_window, "mri_window"), mri_normalization=mri_normalization,
                      tries_factor=tries_factor)
        summary = extract_cubes_from_folder(
            data, save, scale=scale, modality=modality, fold_pattern=fold_pattern, seed=seed, overwrite=overwrite,
            folds=fold_list, spacing=_triple(spacing, "spacing"), dicom_reader=dicom_reader,
            num_workers=num_workers, progress=not quiet, **kwargs)
    except (ValueError, FileNotFoundError, MissingReaderError) as err:
        print(f"extract-cubes: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(summary))
