"""Folder-level cube extraction: a folder of CT/MRI volumes -> per-fold cube files + a MONAI datalist.

``python -m genesis_monai extract-cubes --data DIR --save DIR [--scale 32] [--modality ct|mri] ...``
(the command line lives in :mod:`genesis_monai.data.extract_cli`; the options in
:class:`~genesis_monai.data.extraction_options.ExtractionOptions`).

Writes, in ``save_dir``:

* ``bat_{scale}_s_{X}x{Y}x{Z}_{fold}.npy``: float32 (n, X, Y, Z) in [0, 1], one file per fold
  (the name the reference training scripts read);
* ``cubes_datalist.json``: ``{"description", "training": [{"image": "<file>", "fold": k,
  "n_cubes": n}, ...], "validation": [...], "test": [...], "extraction": {settings}}``, paths
  relative to the JSON's folder (MONAI ``load_decathlon_datalist``); written last, so its presence
  means the run finished;
* ``extraction_settings.json``: the settings of the run, checked when a later run resumes (a
  leftover of a run that wrote no cube file does not count).

How a run goes:

1. every volume's header is checked (:func:`genesis_monai.data.volume_checks.header_problem`); an
   unreadable, non-3D or too small file is skipped with one log line (details at DEBUG level);
2. the readable volumes are put into folds (:mod:`genesis_monai.data.folds`: LUNA16 ``subset{k}``
   sub-folders, or dealt round-robin), so bad files never take a fold's place; when the training
   or validation split gets no volume, a ValueError says so before anything is written;
3. fold by fold, volumes are read, checked (intensities) and cut into cubes streamed into the fold's
   file; a volume that fails here is skipped (its fold keeps the others);
4. the datalist is written, unless training or validation cubes are missing (ValueError).

Resumable: a fold whose file exists is skipped unless ``overwrite``; files are written to a
temporary file in ``save_dir`` and moved into place, so an interrupted run leaves no half-written
``.npy``. Deterministic: each volume's cubes depend only on the options' ``seed`` and the volume's
path relative to ``data_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from genesis_monai.data.cube_dataset import cube_file_name, find_cube_files, parse_cube_file_name
from genesis_monai.data.cubes import extract_cubes
from genesis_monai.data.extraction_options import ExtractionOptions, as_extraction_options
# assign_folds: kept importable from here, its earlier home
from genesis_monai.data.folds import REQUIRED_SPLITS, assign_folds, deal_volumes, fold_folders  # noqa: F401
from genesis_monai.data.npy_stream import NpyStreamWriter
from genesis_monai.data.readers import MissingReaderError, VolumeReadError, list_volumes, read_volume
from genesis_monai.data.volume_checks import header_problem, intensity_problem, no_cubes_reason, one_line
from genesis_monai.io_utils import PARTIAL_SUFFIX, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "CUBE_DATALIST",
    "SETTINGS_FILE",
    "extract_cubes_from_folder",
    "extract_cubes_cli",
    "format_summary",
    "assign_folds",
    "NpyStreamWriter",
]

CUBE_DATALIST = "cubes_datalist.json"
SETTINGS_FILE = "extraction_settings.json"


def __getattr__(name: str) -> Any:
    # the command line imports this module: re-exported lazily, not at import time (no import cycle)
    if name in ("extract_cubes_cli", "format_summary"):
        from genesis_monai.data import extract_cli

        return getattr(extract_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------- #
# skipped volumes
# --------------------------------------------------------------------------------------------- #
def _skip(summary: Dict[str, Any], path: str, message: str, error: Optional[BaseException] = None) -> None:
    """Record a skipped volume: one WARNING line, the whole message (and traceback) at DEBUG."""
    reason = one_line(message, path)
    summary["skipped"].append({"path": path, "reason": reason})
    logger.warning("skipped %s: %s", path, reason)
    logger.debug("skipped %s, details: %s", path, message, exc_info=error)


def _skipped_text(summary: Mapping[str, Any], data_dir: str, n: int = 5) -> str:
    items = summary["skipped"]
    text = "; ".join(f"{os.path.relpath(s['path'], data_dir)}: {s['reason']}" for s in items[:n])
    return text + (f"; ... ({len(items) - n} more)" if len(items) > n else "")


# --------------------------------------------------------------------------------------------- #
# per-volume work
# --------------------------------------------------------------------------------------------- #
def _volume_rng(seed: int, rel_path: str) -> np.random.Generator:
    # depends on the volume only (not its position in the folder), so adding files keeps old cubes
    return np.random.default_rng([int(seed), zlib.crc32(rel_path.replace(os.sep, "/").encode("utf-8"))])


_Outcome = Tuple[Optional[np.ndarray], Optional[str], Optional[BaseException]]


def _cubes_of_volume(path: str, data_dir: str, options: ExtractionOptions) -> _Outcome:
    """(cubes, None, None) or (cubes or None, reason, error): None cubes when the volume was not usable."""
    try:
        vol, _ = read_volume(path, spacing=options.spacing, dicom_reader=options.dicom_reader)
    except (VolumeReadError, MissingReaderError) as err:
        return None, str(err), err
    if options.check_range:
        problem = intensity_problem(vol, options)
        if problem:
            return None, problem, None
    rel = os.path.relpath(path, data_dir)
    try:
        cubes, info = extract_cubes(vol, seed=_volume_rng(options.seed, rel), options=options, return_info=True)
    except ValueError as err:  # VolumeTooSmallError included (after resampling)
        return None, str(err), err
    if len(cubes) == 0:
        return cubes, no_cubes_reason(info, options), None
    return cubes, None, None


def _map(pool: Optional[ThreadPoolExecutor], fn, items: Sequence[Any]) -> Iterable[Any]:
    return pool.map(fn, items) if pool is not None else map(fn, items)


# --------------------------------------------------------------------------------------------- #
# settings and leftovers of earlier runs
# --------------------------------------------------------------------------------------------- #
def _remove_stale_partials(save_dir: str) -> None:
    """Temporary files of an interrupted run (ours only: hidden, ``bat_``/datalist/settings prefix, ``.partial``)."""
    for name in os.listdir(save_dir):
        if name.endswith(PARTIAL_SUFFIX) and (name.startswith(".bat_") or name.startswith("." + CUBE_DATALIST)
                                              or name.startswith("." + SETTINGS_FILE)):
            try:
                os.remove(os.path.join(save_dir, name))
            except OSError:
                pass


def _cube_files_made_with(save_dir: str, settings: Any) -> List[str]:
    """Cube files in ``save_dir`` of the cube set ``settings`` describes (every cube file if it is unreadable)."""
    try:
        scale, crop = int(settings["scale"]), tuple(int(c) for c in settings["extract"]["crop"])
    except (TypeError, KeyError, ValueError):
        scale, crop = None, None
    found = []
    for name in sorted(os.listdir(save_dir)):
        info = parse_cube_file_name(name)
        if info is not None and (scale is None or (info["scale"] == scale and info["shape"] == crop)):
            found.append(name)
    return found


def _check_settings(save_dir: str, settings: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse to mix cubes made with other settings into ``save_dir``; then record ``settings``."""
    path = os.path.join(save_dir, SETTINGS_FILE)
    if os.path.isfile(path) and not overwrite:
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        if previous != settings:
            made = _cube_files_made_with(save_dir, previous)
            if made:
                diff = (sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
                        if isinstance(previous, dict) else ["unreadable " + SETTINGS_FILE])
                raise ValueError(f"{save_dir} holds cubes extracted with other settings (differing: "
                                 f"{', '.join(diff)}; see {path}; e.g. {made[0]}): pass overwrite=True (--overwrite) "
                                 "or choose another --save folder")
            # a failed earlier run wrote its settings but no cube: nothing to protect
            logger.info("%s: replacing the settings of an earlier run that wrote no cube file", path)
    atomic_write_json(path, dict(settings))


# --------------------------------------------------------------------------------------------- #
# the folder-level entry point
# --------------------------------------------------------------------------------------------- #
def _n_cubes(path: str) -> int:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return int(arr.shape[0]) if arr.ndim == 4 else 1


def _missing_splits(fold_counts: Mapping[int, int], splits: Mapping[str, Sequence[int]]) -> List[str]:
    """Required splits (training, validation: where ``splits`` names them) without any count in ``fold_counts``."""
    return [s for s in REQUIRED_SPLITS if s in splits
            and not any(fold_counts.get(int(f), 0) for f in splits[s])]


def extract_cubes_from_folder(
    data_dir: str,
    save_dir: str,
    options: Union[None, ExtractionOptions, Mapping[str, Any]] = None,
    *,
    overwrite: bool = False,
    folds: Optional[Iterable[int]] = None,
    num_workers: int = 0,
    progress: bool = True,
    **option_overrides: Any,
) -> Dict[str, Any]:
    """Extract cubes from every volume of ``data_dir`` into per-fold files + ``cubes_datalist.json``.

    Args:
        data_dir: folder of volumes (NIfTI, MetaImage, NRRD, DICOM series folders), flat or in fold
            sub-folders (option ``fold_pattern``, LUNA16 ``subset{fold}``).
        save_dir: output folder (created).
        options: :class:`~genesis_monai.data.extraction_options.ExtractionOptions` or a mapping of
            its fields (default: the reference recipe).
        overwrite: re-extract folds whose file exists (otherwise they are kept: resumable), and
            replace cubes made with other settings.
        folds: only these folds (default all with volumes); the training/validation checks are then
            warnings (a partial run by request).
        num_workers: threads reading/extracting volumes ahead (0 = in the calling thread).
        progress: tqdm progress bars.
        **option_overrides: fields of ``ExtractionOptions`` by name (``scale``, ``modality``, ``seed``,
            ``crop``, ``border``, ``rule``, ``lung_max``, ``splits``, ``spacing``, ...), applied on top of
            ``options``.

    Returns:
        summary dict: ``volumes_found``, ``volumes_read``, ``skipped`` ([{"path", "reason"}]),
        ``cubes_written`` ({fold: n}), ``folds_kept`` (existing, not redone), ``files``
        ({fold: path}), ``splits`` ({split: n cubes}), ``datalist``, ``seconds``.

    Raises:
        FileNotFoundError / ValueError naming ``data_dir`` when it holds no volumes, when no volume
        gives a cube, or when the training or validation split gets no volume / no cube; ValueError
        for unknown or bad options and when ``save_dir`` holds cubes made with other settings (use
        ``overwrite``).
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    t0 = time.perf_counter()
    if options is not None and not isinstance(options, (ExtractionOptions, Mapping)):
        raise TypeError(f"options must be an ExtractionOptions or a mapping, got {options!r} "
                        "(pass scale=, modality=, seed= ... by name)")
    opts = as_extraction_options(options, **option_overrides)
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    save_dir = os.path.abspath(os.path.expanduser(str(save_dir)))
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    wanted = None if folds is None else {int(f) for f in (folds if isinstance(folds, Iterable) else [folds])}

    # 1. find the volumes, by fold folder or all together
    folders = fold_folders(data_dir, opts.fold_pattern, exclude=[save_dir])
    layout = "subfolders" if folders else "dealt"
    by_folder = ({fold: list_volumes(path, exclude=[save_dir]) for fold, path in folders.items()} if folders
                 else {None: list_volumes(data_dir, exclude=[save_dir])})
    volumes = [v for vs in by_folder.values() for v in vs]
    if not volumes:
        raise ValueError(f"no volumes found in {data_dir} (looked for .nii/.nii.gz/.mhd/.mha/.nrrd files and "
                         f"DICOM series folders{', in sub-folders ' + opts.fold_pattern if folders else ''})")

    summary: Dict[str, Any] = {"data_dir": data_dir, "save_dir": save_dir, "layout": layout,
                               "volumes_found": len(volumes), "volumes_read": 0, "skipped": [],
                               "cubes_written": {}, "folds_kept": [], "files": {}}
    pool = ThreadPoolExecutor(max_workers=int(num_workers)) if int(num_workers) > 0 else None
    try:
        # 2. check headers, then put only the readable volumes into folds
        problems = dict(zip(volumes, _map(pool, lambda p: header_problem(p, opts), volumes)))
        for path, problem in problems.items():
            if problem:
                _skip(summary, path, problem)
        readable = {key: [v for v in vs if not problems[v]] for key, vs in by_folder.items()}
        fold_volumes = ({fold: vs for fold, vs in readable.items() if vs} if folders
                        else deal_volumes(readable[None], opts.splits))
        n_readable = sum(len(vs) for vs in fold_volumes.values())
        if n_readable == 0:
            raise ValueError(f"no cubes could be extracted from the {len(volumes)} volume(s) in {data_dir} "
                             f"(none is readable: {_skipped_text(summary, data_dir)})")
        missing = _missing_splits({f: len(vs) for f, vs in fold_volumes.items()}, opts.splits)
        if missing and wanted is None:
            raise ValueError(
                f"{data_dir}: no readable volume for the {' and '.join(missing)} split(s) (folds "
                f"{', '.join(str(list(opts.splits[s])) for s in missing)}): {n_readable} of {len(volumes)} volume(s) "
                f"readable ({layout} layout); pretraining needs training and validation volumes"
                + (f"; skipped: {_skipped_text(summary, data_dir)}" if summary["skipped"] else ""))
        if wanted is not None:
            fold_volumes = {f: v for f, v in fold_volumes.items() if f in wanted}

        # 3. cubes, fold by fold, into save_dir
        os.makedirs(save_dir, exist_ok=True)
        _remove_stale_partials(save_dir)
        settings = opts.settings(layout)
        _check_settings(save_dir, settings, overwrite)
        for fold, fold_paths in fold_volumes.items():
            out_path = os.path.join(save_dir, cube_file_name(opts.scale, opts.crop, fold))
            if os.path.isfile(out_path) and not overwrite:
                summary["folds_kept"].append(fold)
                summary["files"][fold] = out_path
                continue
            results = _map(pool, lambda p: _cubes_of_volume(p, data_dir, opts), fold_paths)
            with NpyStreamWriter(out_path, opts.crop) as writer, logging_redirect_tqdm():
                bar = tqdm(zip(fold_paths, results), total=len(fold_paths), desc=f"fold {fold}", unit="vol",
                           disable=not progress, leave=False)
                for path, (cubes, reason, error) in bar:
                    if cubes is not None:
                        summary["volumes_read"] += 1
                        if len(cubes):
                            writer.append(cubes)
                    if reason:
                        _skip(summary, path, reason, error)
                    bar.set_postfix(cubes=writer.n)
                summary["cubes_written"][fold] = writer.n
                if writer.n:
                    summary["files"][fold] = writer.commit()
                else:  # an empty file would mark the fold done; retry it next run instead
                    logger.warning("fold %d: no cubes from its %d volume(s); no file written", fold, len(fold_paths))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # 4. the datalist lists every cube file of this cube set in save_dir (kept and new)
    found = find_cube_files(save_dir, scale=opts.scale, shape=opts.crop, splits=opts.splits)
    datalist: Dict[str, Any] = {
        "description": f"Models Genesis pretraining cubes {'x'.join(map(str, opts.crop))} in [0, 1] from {data_dir} "
                       f"({opts.modality}, {opts.scale} per volume), written by genesis_monai extract-cubes",
        "cube_shape": list(opts.crop), "scale": opts.scale, "modality": opts.modality,
    }
    split_counts: Dict[str, int] = {}
    fold_counts: Dict[int, int] = {}
    for split in list(opts.splits) + [s for s in found if s not in opts.splits]:
        entries = []
        for rec in found.get(split, []):
            n = _n_cubes(rec["image"])
            if n:
                entries.append({"image": os.path.relpath(rec["image"], save_dir), "fold": rec["fold"], "n_cubes": n})
                fold_counts[int(rec["fold"])] = n
        datalist[split] = entries
        split_counts[split] = sum(e["n_cubes"] for e in entries)
    datalist["extraction"] = settings
    summary["splits"] = split_counts
    summary["seconds"] = time.perf_counter() - t0
    if sum(split_counts.values()) == 0:
        raise ValueError(f"no cubes could be extracted from the {len(volumes)} volume(s) in {data_dir}"
                         f"{' (' + _skipped_text(summary, data_dir) + ')' if summary['skipped'] else ''}")
    missing = _missing_splits(fold_counts, opts.splits)
    if missing and wanted is None:
        raise ValueError(f"{save_dir}: no {' and '.join(missing)} cubes (folds "
                         f"{', '.join(str(list(opts.splits[s])) for s in missing)}); pretraining needs training and "
                         f"validation cubes; the fold files written so far are kept"
                         + (f"; skipped: {_skipped_text(summary, data_dir)}" if summary["skipped"] else ""))
    if missing:
        logger.warning("%s: no %s cubes yet (only folds %s were asked for)", save_dir, " and ".join(missing),
                       sorted(wanted or ()))
    datalist_path = os.path.join(save_dir, CUBE_DATALIST)
    atomic_write_json(datalist_path, datalist)
    summary["datalist"] = datalist_path
    return summary
