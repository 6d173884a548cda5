"""The ``discover`` command: self-discovery steps 2 and 3 from a folder of volumes to pattern files.

``python -m genesis_monai discover --data VOLUMES --save DIR [--weights AE_OR_GENESIS.pt] [--n_classes 200] ...``

1. list the volumes and split them into training / validation (``--validation_data``, the reference's
   ``train/`` + ``validation/`` sub-folders, or a seeded ``--val_fraction``);
2. features (:mod:`.features`): every volume read once, normalised, resized to ``feature_shape``,
   global-average-pooled deepest UNet3D encoder stage; unreadable volumes are skipped with one line;
   written to ``train_features.npy`` / ``validation_features.npy`` (the reference's names) and reused on
   a rerun with the same settings;
3. patterns (:func:`.patterns.generate_patterns`): classes, neighbours, crops in the reference layout,
   ``datalist.json``, resumable chunk by chunk;
4. ``pattern_classes.png`` (:func:`.picture.save_class_grid`).
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import re
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from genesis_monai.data.discovery.features import (REFERENCE_FEATURE_SHAPE, check_feature_shape, extract_features,
                                                   feature_network)
from genesis_monai.data.discovery.patterns import REFERENCE_CHUNK_CLASSES, REFERENCE_CROP, generate_patterns
from genesis_monai.data.discovery.picture import PICTURE_FILE, save_class_grid
from genesis_monai.data.discovery.progress import progress_bar
from genesis_monai.data.discovery.state import read_state, settings_differences, write_state
from genesis_monai.data.discovery.volumes import VolumeSet, split_sources
from genesis_monai.data.extraction_options import ExtractionOptions
from genesis_monai.data.readers import MissingReaderError
from genesis_monai.io_utils import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["discover", "discover_cli", "format_discovery_summary", "FEATURE_FILES"]

#: the reference's feature file names, per split
FEATURE_FILES = {"training": "train_features.npy", "validation": "validation_features.npy"}


def _ints(value: Any, n: int, name: str, example: str) -> Tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,x\s]+", value.strip("()[] ")) if v]
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise ValueError(f"{name} must be {n} integers like {example}, got {value!r}")
    return out


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _drop_small(vs: VolumeSet, feats: np.ndarray, crop: Sequence[int]) -> Tuple[VolumeSet, np.ndarray]:
    """Leave out (with a line each) volumes smaller than the crop: they cannot give an instance."""
    keep = []
    for i, shape in enumerate(vs.shapes):
        if any(s < c for s, c in zip(shape, crop)):
            reason = f"shape {tuple(shape)} is smaller than the crop {tuple(crop)}"
            logger.warning("self-discovery: skipping %s volume %s: %s", vs.name, vs.label(i), reason)
            vs.skipped.append({"path": vs.label(i), "reason": reason})
        else:
            keep.append(i)
    if len(keep) == len(vs):
        return vs, feats
    out = vs.subset(keep)
    out.skipped = vs.skipped
    return out, feats[keep]


def _features(save: str, train_src: List[str], val_src: List[str], settings: Dict[str, Any], options: ExtractionOptions,
              is_normalized: bool, crop: Tuple[int, ...], weights: Optional[str], width: float, seed: int,
              batch_size: int, device: str, feature_shape: Tuple[int, ...], resize_mode: str,
              progress: bool) -> Tuple[VolumeSet, VolumeSet, np.ndarray, np.ndarray, Dict[str, Any], bool]:
    """The two volume sets and their features: recorded ones when the settings match, else computed."""
    state = read_state(save) or {}
    fstate = state.get("features")
    files = {k: os.path.join(save, v) for k, v in FEATURE_FILES.items()}
    if fstate is not None:
        diffs = settings_differences(fstate["settings"], settings)
        if diffs:
            raise ValueError(f"{save} holds a self-discovery run with other feature settings ({'; '.join(diffs)}): "
                             "use a new output folder (or the same settings to resume)")
        try:
            feats = {k: np.load(p, allow_pickle=False) for k, p in files.items()}
        except (OSError, ValueError):
            feats = None
        if feats is not None and all(len(feats[k]) == len(fstate[k]["kept"]) for k in files):
            sets = {k: VolumeSet(fstate[k]["kept"], options, is_normalized, k, shapes=fstate[k]["shapes"])
                    for k in files}
            for k in files:
                sets[k].skipped = list(fstate[k]["skipped"])
            logger.info("self-discovery: reusing the features in %s", save)
            return sets["training"], sets["validation"], feats["training"], feats["validation"], fstate, True
    net = feature_network(weights, width=width, seed=seed)
    out: Dict[str, Any] = {"settings": settings}
    sets, feats = {}, {}
    for key, src in (("training", train_src), ("validation", val_src)):
        vs = VolumeSet(src, options, is_normalized, key)
        bar = progress_bar(len(vs), f"self-discovery: {key} features", progress)
        try:
            f = extract_features(net, vs, batch_size=batch_size, device=device, feature_shape=feature_shape,
                                 resize_mode=resize_mode, progress=bar.update)
        finally:
            bar.close()
        readable = vs.readable or []
        kept = vs.subset(readable)
        kept.skipped = vs.skipped
        kept, f = _drop_small(kept, f, crop)
        sets[key], feats[key] = kept, f
        out[key] = {"kept": kept.labels, "shapes": [list(s) for s in kept.shapes], "skipped": kept.skipped,
                    "file": FEATURE_FILES[key]}
    os.makedirs(save, exist_ok=True)
    for key in files:
        atomic_write_bytes(files[key], _npy_bytes(feats[key]))
    state["features"] = out
    write_state(save, state)
    return sets["training"], sets["validation"], feats["training"], feats["validation"], out, False


def discover(
    data: Any,
    save: str,
    weights: Optional[str] = None,
    width: float = 1.0,
    n_classes: int = 200,
    n_instances: int = 200,
    n_instances_val: int = 30,
    crop: Any = REFERENCE_CROP,
    feature_shape: Any = REFERENCE_FEATURE_SHAPE,
    multi_res: bool = True,
    min_distance: float = 5.0,
    modality: str = "ct",
    validation_data: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    batch_size: int = 2,
    device: str = "auto",
    border: Any = None,
    rule: Optional[str] = None,
    lung_max: Optional[float] = None,
    tissue_min: Optional[float] = None,
    tissue_threshold: Optional[float] = None,
    len_depth: Optional[int] = None,
    window: Any = None,
    is_normalized: bool = False,
    max_trials: int = 200,
    chunk_classes: int = REFERENCE_CHUNK_CLASSES,
    reference_repeat_quirk: bool = False,
    patch_range: Any = None,
    jitter: Optional[int] = None,
    dtype: str = "float32",
    resize_mode: str = "trilinear",
    picture: bool = True,
    progress: bool = True,
) -> Dict[str, Any]:
    """Self-discovery (Semantic Genesis / TransVW steps 2-3): volumes -> features -> pattern files; returns a summary.

    Args:
        data: folder of volumes (NIfTI / MetaImage / NRRD / DICOM series / ``.npy``; the reference's
            ``train/`` + ``validation/`` sub-folders are used as the split), a list of paths, or a datalist JSON.
        save: output folder (pattern files, ``datalist.json``, features, state, picture). A rerun with the
            same settings resumes: finished chunks are kept.
        weights: feature network checkpoint (a trained auto-encoder UNet3D or Models Genesis weights, at
            ``width``). None: a seeded random UNet3D, with a WARNING (weak features).
        width: UNet3D channel multiplier (features have 512 * width channels).
        n_classes: pattern classes C (reference: 200 generated; 44 / 50 trained on).
        n_instances / n_instances_val: K nearest training (200) / validation (30) volumes per class.
        crop: pattern cube X,Y,Z (64,64,32; e.g. 32,32,16 at demo scale).
        feature_shape: volumes are resized to this for the features (128,128,64; divisible by 8).
        multi_res: also write resolutions 2 and 3 (random 50-79 px crops with +-10 px jitter, resized;
            scaled with the crop). On by default: the reference README runs with it and its training reads 3.
        min_distance: smallest distance in voxels between two classes' corners (5).
        modality: intensity preset: ct | mri | mri_fixed | mri_minmax.
        validation_data: folder / list of validation volumes (default: see ``data``, else ``val_fraction``).
        val_fraction: share of ``data`` drawn (seeded) for validation when no validation volumes are given.
        seed: seed of everything random (split, random network, references, corners, multi-resolution).
        batch_size: volumes per feature forward pass.
        device: auto | cpu | cuda[:k] (feature network).
        border: voxels kept free from the edges X,Y,Z (reference 100,100,30; e.g. 8,8,4 for small volumes).
        rule: foreground rule of the corner: lung (reference, CT) | tissue | off | auto.
        lung_max / tissue_min / tissue_threshold / len_depth / window: the rule's and window's settings
            (:class:`~genesis_monai.data.extraction_options.ExtractionOptions`).
        is_normalized: the volumes are already in [0, 1] (the reference's --is_normalized).
        max_trials: corners tried per reference (200).
        chunk_classes: classes per chunk file (50).
        reference_repeat_quirk: reproduce the reference's never-reset "repeated" flag (one too-close draw
            fails the reference); off = fixed.
        patch_range / jitter: multi-resolution size range (low, high) and jitter along X (default scaled
            from 50,80 and 10 at a 64 crop).
        dtype: data files float32 (default) | float64 (the reference's).
        resize_mode: trilinear | area (for the feature shape).
        picture: write pattern_classes.png.
        progress: progress bars.

    Returns:
        the summary of :func:`~genesis_monai.data.discovery.patterns.generate_patterns` plus ``"split"``,
        ``"training_volumes"``, ``"validation_volumes"``, ``"skipped"`` ([{"path", "reason"}]),
        ``"features_reused"``, ``"feature_channels"``, ``"picture"``, ``"seconds"``.
    """
    t0 = time.perf_counter()
    crop_t = _ints(crop, 3, "crop", "64,64,32")
    shape_t = check_feature_shape(_ints(feature_shape, 3, "feature_shape", "128,128,64"))
    overrides = {k: v for k, v in (("border", border), ("rule", rule), ("lung_max", lung_max),
                                   ("tissue_min", tissue_min), ("tissue_threshold", tissue_threshold),
                                   ("len_depth", len_depth), ("window", window)) if v is not None}
    options = ExtractionOptions.from_mapping({"modality": modality, "crop": crop_t, **overrides})
    K, Kv = int(n_instances), int(n_instances_val)
    save = os.path.abspath(str(save))
    train_src, val_src, how = split_sources(data, validation_data, val_fraction, seed, exclude=[save])
    if len(train_src) < K or len(val_src) < Kv:
        raise ValueError(f"self-discovery needs at least n_instances={K} training and n_instances_val={Kv} "
                         f"validation volumes, found {len(train_src)} and {len(val_src)} ({how}) in {data!r}: "
                         "lower n_instances / n_instances_val or add volumes")
    weights_path = None if weights is None else os.path.abspath(str(weights))
    if weights_path is not None and not os.path.isfile(weights_path):
        raise FileNotFoundError(f"feature weights {weights_path} not found")
    fsettings = {
        "training_sources": train_src, "validation_sources": val_src, "split": how,
        "weights": weights_path, "weights_bytes": None if weights_path is None else os.path.getsize(weights_path),
        "width": float(width), "seed": int(seed), "feature_shape": shape_t, "resize_mode": resize_mode,
        "is_normalized": bool(is_normalized), "intensity": options.preset,
        "window": options.window or (options.hu_window if options.preset == "ct" else options.mri_window),
        "crop": crop_t,
    }
    train_set, val_set, f_train, f_val, _, reused = _features(
        save, train_src, val_src, fsettings, options, bool(is_normalized), crop_t, weights_path, width, int(seed),
        batch_size, device, shape_t, resize_mode, progress)
    skipped = list(train_set.skipped) + list(val_set.skipped)
    if len(train_set) < K or len(val_set) < Kv:
        names = "; ".join(s["path"] for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        raise ValueError(f"after skipping {len(skipped)} unusable volume(s) ({names}) {len(train_set)} training and "
                         f"{len(val_set)} validation volumes remain, but n_instances={K} and n_instances_val={Kv} "
                         "are needed")
    summary = generate_patterns(
        train_set, val_set, f_train, f_val, save, n_classes=n_classes, n_instances=K, n_instances_val=Kv,
        crop=crop_t, multi_res=bool(multi_res), min_distance=min_distance, max_trials=max_trials, options=options,
        seed=int(seed), chunk_classes=chunk_classes, reference_repeat_quirk=bool(reference_repeat_quirk),
        patch_range=None if patch_range is None else _ints(patch_range, 2, "patch_range", "50,80"),
        jitter=jitter, dtype=dtype, progress=progress)
    if picture:
        summary["picture"] = save_class_grid(save, os.path.join(save, PICTURE_FILE),
                                             n_classes=min(8, int(n_classes)), n_instances=min(8, K))
    summary.update(split=how, training_volumes=len(train_set), validation_volumes=len(val_set), skipped=skipped,
                   features_reused=reused, feature_channels=int(f_train.shape[1]),
                   seconds=time.perf_counter() - t0)
    return summary


def format_discovery_summary(summary: Mapping[str, Any]) -> str:
    """A human-readable multi-line summary of :func:`discover`'s result."""
    lines = [f"volumes: {summary['training_volumes']} training, {summary['validation_volumes']} validation "
             f"({summary['split']}); {len(summary['skipped'])} skipped"]
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in summary["skipped"]]
    lines.append(f"features: {summary['feature_channels']} channels"
                 + (" (reused from an earlier run)" if summary["features_reused"] else ""))
    lines.append(f"classes: {summary['n_classes']} x {summary['n_instances']} training instances "
                 f"(resolutions {summary['resolutions']}), {summary['n_instances_val']} validation instances; "
                 f"references tried {summary['references_tried']}, failed {summary['references_failed']}")
    lines.append(f"chunks written: {summary['chunks_written'] or 'none'}; kept from an earlier run: "
                 f"{summary['chunks_kept'] or 'none'}")
    lines.append(f"datalist: {summary['datalist']}")
    if summary.get("picture"):
        lines.append(f"picture: {summary['picture']}")
    lines.append(f"time: {summary['seconds']:.1f} s")
    return "\n".join(lines)


def discover_cli(data: str, save: str, quiet: bool = False, **kwargs: Any) -> None:
    """Command line of :func:`discover` (``python -m genesis_monai discover --data DIR --save DIR ...``).

    Prints a summary; exits with status 1 and a one-paragraph message (no traceback) on bad input.
    Every option of :func:`discover` is a ``--flag`` (e.g. ``--n_classes 50 --crop 32,32,16 --border 8,8,4
    --weights ae.pt --width 0.25``); ``--quiet`` hides the progress bars.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    unknown = sorted(set(kwargs) - set(inspect.signature(discover).parameters) | ({"progress"} & set(kwargs)))
    if unknown:
        print(f"discover: error: unknown option(s) {unknown}; see --help", file=sys.stderr)
        sys.exit(2)
    try:
        summary = discover(data, save, progress=not quiet, **kwargs)
    except (ValueError, FileNotFoundError, MissingReaderError) as err:
        print(f"discover: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(format_discovery_summary(summary))


def _cli_signature() -> inspect.Signature:
    # fire reads this: the flags are discover's own parameters (declared once), plus --quiet instead of progress
    P = inspect.Parameter
    params = [p if p.name in ("data", "save") else p.replace(kind=P.KEYWORD_ONLY)
              for p in inspect.signature(discover).parameters.values() if p.name != "progress"]
    params.append(P("quiet", P.KEYWORD_ONLY, default=False))
    return inspect.Signature(params, return_annotation=None)


discover_cli.__signature__ = _cli_signature()  # type: ignore[attr-defined]
#: one line per flag (fire shows the first line of each argument's description)
_CLI_HELP = {
    "data": "folder of volumes (NIfTI/MetaImage/NRRD/DICOM/.npy; train/ + validation/ sub-folders = the split) or JSON",
    "save": "output folder (pattern files, datalist.json, features, state, picture); a rerun resumes",
    "weights": "feature network checkpoint (trained auto-encoder UNet3D / Models Genesis); default: random (weak)",
    "width": "UNet3D channel multiplier (features: 512 * width channels)",
    "n_classes": "pattern classes C (reference: 200 generated, 44 / 50 trained on)",
    "n_instances": "K nearest training volumes per class (200)",
    "n_instances_val": "nearest validation volumes per class (30)",
    "crop": "pattern cube X,Y,Z (64,64,32; e.g. 32,32,16 at demo scale)",
    "feature_shape": "volumes are resized to this for the features (128,128,64; divisible by 8)",
    "multi_res": "also write resolutions 2 and 3 (random 50-79 px crops, +-10 px jitter, resized; scaled with crop)",
    "min_distance": "smallest distance in voxels between two classes' corners (5)",
    "modality": "intensity preset: ct | mri | mri_fixed | mri_minmax",
    "validation_data": "folder / list of validation volumes (default: train/validation sub-folders or val_fraction)",
    "val_fraction": "share of DATA drawn (seeded) for validation when no validation volumes are given",
    "seed": "seed of everything random (split, random network, references, corners, multi-resolution)",
    "batch_size": "volumes per feature forward pass",
    "device": "auto | cpu | cuda[:k] for the feature network",
    "border": "voxels kept free from the edges X,Y,Z (reference 100,100,30; e.g. 8,8,4 for small volumes)",
    "rule": "corner foreground rule: lung (reference, CT) | tissue | off | auto",
    "lung_max": "lung rule: reject windows whose dense score exceeds this fraction (0.15)",
    "tissue_min": "tissue rule: reject windows whose dense score is below this fraction (0.5)",
    "tissue_threshold": "dense-voxel threshold in normalised [0, 1] units (CT default 0.425 = -150 HU)",
    "len_depth": "look-ahead slices of the rule (3)",
    "window": "(low, high) intensity window overriding the modality's",
    "is_normalized": "volumes are already in [0, 1] (the reference's --is_normalized)",
    "max_trials": "corners tried per reference (200)",
    "chunk_classes": "classes per chunk file fold{k} (50)",
    "reference_repeat_quirk": "reproduce the reference's never-reset 'repeated' flag (off = fixed)",
    "patch_range": "multi-resolution size range low,high along X (default 50,80 scaled by crop X / 64)",
    "jitter": "multi-resolution jitter j: dx ~ U{-j..j-1} (default 10 scaled by crop X / 64)",
    "dtype": "data files float32 (default) | float64 (the reference's)",
    "resize_mode": "trilinear | area (resizing to feature_shape)",
    "picture": "write pattern_classes.png",
    "quiet": "no progress bars",
}
discover_cli.__doc__ = inspect.cleandoc(discover_cli.__doc__ or "") + "\n\nArgs:\n" + "\n".join(
    f"    {name}: {text}." for name, text in _CLI_HELP.items()) + "\n"
