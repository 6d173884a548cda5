"""Self-discovery step 3: anatomical pattern classes ("visual words") from patient features.

The reference ``pattern_generator_3D.py`` (research/upstream_genesis.md §6.3, METHODS.md §2) does, for
each class i = 0 .. C-1:

1. pick a random training volume never used as a reference before;
2. rank all training volumes (and all validation volumes) by the Euclidean distance of their features
   to the reference's; the reference itself is rank 0;
3. draw a corner (x, y, z) on the reference exactly like Models Genesis cube extraction (border
   100/100/30, a 64x64x(32+3) window, the "lung" rule) that is at least ``min_distance`` = 5 voxels from
   every earlier class's corner, up to 200 trials; on failure pick another reference;
4. cut the 64x64x32 crop at that same corner out of each of the K = 200 nearest training volumes
   (resolution 1, label i) and the 30 nearest validation volumes; with ``multi_res`` two more crops per
   training instance with square in-plane size s ~ U{50..79} and in-plane jitter dx, dy ~ U{-10..9}
   (same z and depth), resized to 64x64x32 (resolutions 2 and 3);
5. save every 50 classes as chunk k (``train_data{r}_vwGen_ex_ref_fold{k}.0.npy`` ...).

:func:`generate_patterns` does the same with array operations: all trial corners of a reference are
tested at once (distances to earlier corners as one matrix, the foreground rule on gathered batches of
windows via :func:`genesis_monai.data.cubes.rejection_decisions`), the neighbours of every class come
from ONE distance matrix (``torch.cdist``, float64, exact differences), and the crops are gathered many
at a time per volume instead of one ``np.load`` of a whole volume per instance (10,000 per reference
chunk): for ``.npy`` volumes only the windows are read (memory-mapped, :meth:`VolumeSet.gather`) and the
rows are streamed to the files in blocks of classes; other volumes (NIfTI, DICOM) are read once per chunk
and all their crops cut together. Multi-resolution boxes of one size are resized together, separably.

Differences from the reference, each named:

* ``reference_repeat_quirk`` (default False = fixed): the reference never resets its ``repeated`` flag
  between trials, so a single draw closer than ``min_distance`` to an earlier corner makes every
  remaining trial fail and the reference is given up. True reproduces that.
* Off-by-one fixed: the reference slices each chunk with ``[(i-49)*K : (i+1)*K - 1]`` and so drops
  the last instance of every 50-class chunk (9,999 rows instead of 10,000); here every row is written.
  A last chunk of fewer than 50 classes is written too (the reference saved only when ``(i+1) % 50 == 0``,
  so C = 44 would write nothing).
* Crops are cut from the normalised volume (the reference cut them from the volume as loaded and only
  normalised its acceptance copy, so un-normalised inputs produced HU cubes).
* Multi-resolution crops are resized linearly at the sample positions of ``F.interpolate`` (trilinear,
  ``align_corners=False``), not with skimage's ``resize`` (linear with anti-aliasing when shrinking);
  a draw that leaves the volume is redrawn on both sides (the reference checked only the upper bound).
  At other crop sizes the size range and the jitter scale with the crop: s ~ U{round(50 cx/64) ..
  round(80 cx/64) - 1} and dx ~ U{-round(10 cx/64) .. round(10 cx/64) - 1} (e.g. 25..39 and -5..4 for a
  32x32x16 crop); along Y both are scaled by cy / cx (the same when the crop is square).
* A neighbour volume smaller than the reference has the corner moved inside it (the reference would
  fail); a volume smaller than the crop is an error. References are drawn only among the training
  volumes that can hold the window with its border (uniformly among the untried ones: the reference's
  draw-until-unused has the same distribution). The reference volume is forced to neighbour rank 0
  (the reference relies on its zero distance, which ties with a duplicate volume).
* Randomness: NumPy ``Generator`` (the reference used Python's ``random`` seeded with 1 and an unseeded
  NumPy RNG): a seed reproduces a run. Planning draws all ``max_trials`` corners of a reference at once;
  each class's multi-resolution draws come from its own generator (seed, class), so they do not depend
  on chunking or resuming.
* The data files are float32 by default (``dtype="float64"`` writes the reference's dtype); labels are
  float64 (n, 1) as in the reference.

Resumable: the plan (references, corners, trials, RNG state) and the neighbours are kept in
``discovery_state.json`` (:mod:`genesis_monai.data.discovery.state`); a chunk already complete on disk
is kept and skipped; a rerun writes byte-identical files. ``n_classes`` may grow between runs (the plan
continues where it stopped).
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from genesis_monai.data.cubes import MRI_TISSUE_THRESHOLD, VolumeTooSmallError, corner_ranges, draw_corners, \
    rejection_decisions
from genesis_monai.data.discovery.progress import progress_bar
from genesis_monai.data.discovery.state import read_state, settings_differences, write_state
from genesis_monai.data.discovery.volumes import VolumeSet
from genesis_monai.data.discovery.writer import DTYPES, ChunkWriter, chunk_is_complete, write_discovery_datalist
from genesis_monai.data.extraction_options import ExtractionOptions

logger = logging.getLogger(__name__)

__all__ = [
    "generate_patterns",
    "nearest_neighbours",
    "find_coordinate",
    "plan_classes",
    "multires_ranges",
    "draw_multires_boxes",
    "resample_boxes",
    "cut_crops",
    "normalised_threshold",
    "REFERENCE_CROP",
    "REFERENCE_CHUNK_CLASSES",
]

#: a window reader: ``(corners (n, 3), size (X, Y, Z)) -> (n, *size)`` normalised values of one volume
Windows = Callable[[np.ndarray, Tuple[int, int, int]], np.ndarray]
#: the reference crop (X, Y, Z)
REFERENCE_CROP = (64, 64, 32)
#: classes per saved chunk in the reference (``fold{k}`` = classes 50(k-1) .. 50k-1)
REFERENCE_CHUNK_CLASSES = 50
#: how often an out-of-volume multi-resolution draw is redrawn before it is clamped inside
_REDRAWS = 100
#: bytes of crops cut per block of classes before they are streamed to the files
_BLOCK_BYTES = 64 * 2**20
#: boxes of one size resized together (bounds the temporary memory: 32 x 79x79x32 floats = 25 MB)
_BOXES_PER_CALL = 32


# --------------------------------------------------------------------------------------------- #
# neighbours
# --------------------------------------------------------------------------------------------- #
def nearest_neighbours(queries: np.ndarray, features: np.ndarray, k: int,
                       first: Optional[Sequence[int]] = None) -> np.ndarray:
    """Indices of the ``k`` nearest rows of ``features`` for every query: int64 (C, k), nearest first.

    One batched Euclidean distance matrix (``torch.cdist`` in float64 with exact differences, not the
    matrix-product shortcut, so ranks are not disturbed by cancellation); ties go to the lower index.
    ``first``: per query, an index placed at rank 0 whatever the distances (the reference volume of
    a class, which the reference finds at rank 0 by its zero distance; this keeps it there even when
    another volume has identical features).
    """
    q = torch.as_tensor(np.asarray(queries, dtype=np.float64))
    f = torch.as_tensor(np.asarray(features, dtype=np.float64))
    if q.ndim != 2 or f.ndim != 2 or q.shape[1] != f.shape[1]:
        raise ValueError(f"expected queries (C, F) and features (N, F), got {tuple(q.shape)} and {tuple(f.shape)}")
    k = int(k)
    if not 1 <= k <= f.shape[0]:
        raise ValueError(f"k={k} nearest neighbours requested among {f.shape[0]} volumes")
    if len(q) == 0:
        return np.zeros((0, k), dtype=np.int64)
    dist = torch.cdist(q[None], f[None], compute_mode="donot_use_mm_for_euclid_dist")[0].numpy()
    if first is not None:
        dist[np.arange(len(dist)), np.asarray(first, dtype=np.int64)] = -1.0
    return np.argsort(dist, axis=1, kind="stable")[:, :k].astype(np.int64)


# --------------------------------------------------------------------------------------------- #
# coordinates
# --------------------------------------------------------------------------------------------- #
def normalised_threshold(options: ExtractionOptions) -> float:
    """The dense-voxel threshold in normalised [0, 1] units (CT: -150 HU in the [-1000, 1000] window = 0.425)."""
    if options.tissue_threshold is not None:
        return float(options.tissue_threshold)
    if options.preset == "ct":
        lo, hi = options.window or options.hu_window
        return (float(options.tissue_threshold_hu) - lo) / (hi - lo)
    return MRI_TISSUE_THRESHOLD


def _window_getter(volume: Any) -> Windows:
    """``volume``: an (X, Y, Z) array (windows sliced out of it) or already a :data:`Windows` callable."""
    if callable(volume):
        return volume

    def get(corners: np.ndarray, size: Tuple[int, int, int]) -> np.ndarray:
        return sliding_window_view(volume, size)[corners[:, 0], corners[:, 1], corners[:, 2]]

    return get


def find_coordinate(volume: Any, corners: np.ndarray, previous: np.ndarray, crop: Sequence[int],
                    options: ExtractionOptions, min_distance: float = 5.0,
                    reference_repeat_quirk: bool = False, threshold: Optional[float] = None) -> Tuple[int, int]:
    """The first acceptable trial corner: ``(index into corners or -1, trials used)``.

    A trial is acceptable when its Euclidean distance to every ``previous`` corner is >= ``min_distance``
    and its window (crop X, Y, Z + ``options.len_depth``) passes ``options.effective_rule`` on the
    normalised ``volume`` (X, Y, Z) in [0, 1] (an array, or a :data:`Windows` callable such as
    ``lambda c, s: volume_set.gather(i, c, s)``). ``corners`` (T, 3) are the trials in order, e.g. from
    :func:`~genesis_monai.data.cubes.draw_corners`; ``previous`` (P, 3).

    ``reference_repeat_quirk``: the reference's never-reset ``repeated`` flag: from the first too-close
    trial on, every trial fails (default False: each trial is judged on its own).
    """
    corners = np.asarray(corners, dtype=np.int64).reshape(-1, 3)
    previous = np.asarray(previous, dtype=np.float64).reshape(-1, 3)
    n = len(corners)
    allowed = np.ones(n, dtype=bool)
    if len(previous):
        d = np.sqrt(((corners[:, None, :].astype(np.float64) - previous[None]) ** 2).sum(-1))
        close = (d < float(min_distance)).any(axis=1)
        allowed &= ~close
        if reference_repeat_quirk and close.any():
            allowed[int(np.argmax(close)):] = False
    candidates = np.flatnonzero(allowed)
    if not len(candidates):
        return -1, n
    rule = options.effective_rule
    if rule == "off":
        return int(candidates[0]), int(candidates[0]) + 1
    cx, cy, cz = (int(c) for c in crop)
    depth = cz + int(options.len_depth)
    windows = _window_getter(volume)
    thr = normalised_threshold(options) if threshold is None else float(threshold)
    start, batch = 0, 4
    while start < len(candidates):
        # growing batches: the first trials are usually accepted, so gather few windows first
        idx = candidates[start:start + batch]
        c = corners[idx]
        crops = windows(c, (cx, cy, depth))
        rejected = rejection_decisions(crops, thr, options.lung_max, deps=cz, len_depth=int(options.len_depth),
                                       rule=rule, tissue_min=options.tissue_min)
        ok = np.flatnonzero(~rejected)
        if len(ok):
            first = int(idx[ok[0]])
            return first, first + 1
        start += batch
        batch = min(batch * 2, 64)
    return -1, n


def _eligible(shapes: Sequence[Sequence[int]], crop: Sequence[int], options: ExtractionOptions) -> np.ndarray:
    ok = np.zeros(len(shapes), dtype=bool)
    for i, s in enumerate(shapes):
        try:
            corner_ranges(s, crop, options.len_depth, options.border)
            ok[i] = True
        except VolumeTooSmallError:
            pass
    return ok


def plan_classes(volumes: VolumeSet, n_classes: int, crop: Sequence[int], options: ExtractionOptions,
                 rng: np.random.Generator, plan: Dict[str, Any], min_distance: float = 5.0, max_trials: int = 200,
                 reference_repeat_quirk: bool = False, checkpoint_every: int = REFERENCE_CHUNK_CLASSES,
                 on_checkpoint: Any = None, progress: bool = False) -> Dict[str, Any]:
    """Extend ``plan`` to ``n_classes`` classes (reference volume + corner each); returns ``plan``.

    ``plan``: ``{"classes": [{"class", "reference", "coordinate", "trials"}], "tried": [reference indices
    in the order tried], "failed": [...]}`` (as kept in the state file; start with empty lists).
    References are drawn uniformly among the training volumes that can hold the crop window with its
    border and were never tried; each gets ``max_trials`` corners (:func:`find_coordinate`).
    ``on_checkpoint(plan)`` is called after every ``checkpoint_every`` new classes (to save the state
    with the generator's position).

    Raises:
        ValueError: fewer candidate references than classes, or none left after failures (the message
            says how many were tried and failed and what to change).
    """
    shapes = volumes.shapes
    eligible = _eligible(shapes, crop, options)
    n_eligible = int(eligible.sum())
    if n_classes > n_eligible:
        why = ""
        if n_eligible == 0 and len(shapes):
            try:
                corner_ranges(shapes[0], crop, options.len_depth, options.border)
            except VolumeTooSmallError as err:
                why = f" ({err})"
        raise ValueError(f"n_classes={n_classes} needs {n_classes} different reference volumes, but only {n_eligible} "
                         f"of the {len(shapes)} training volumes can hold a {tuple(crop)} crop (+{options.len_depth} "
                         f"look-ahead slices) inside border {options.border}{why}: lower n_classes or the border")
    tried = np.zeros(len(shapes), dtype=bool)
    tried[np.asarray(plan["tried"], dtype=np.int64)] = True
    coords = [c["coordinate"] for c in plan["classes"]]
    bar = progress_bar(n_classes - len(plan["classes"]), "self-discovery: choosing pattern coordinates", progress)
    since = 0
    try:
        while len(plan["classes"]) < n_classes:
            free = np.flatnonzero(eligible & ~tried)
            if not len(free):
                raise ValueError(
                    f"self-discovery ran out of reference volumes after {len(plan['classes'])} of {n_classes} classes: "
                    f"all {n_eligible} candidate references were tried and {len(plan['failed'])} gave no corner "
                    f"in {max_trials} trials ({options.effective_rule} rule, min_distance {min_distance:g}); lower "
                    "n_classes, raise max_trials, or relax the foreground rule (rule / lung_max / tissue_min)")
            ref = int(free[rng.integers(len(free))])
            tried[ref] = True
            plan["tried"].append(ref)
            low, high = corner_ranges(shapes[ref], crop, options.len_depth, options.border)
            corners = draw_corners(rng, int(max_trials), low, high)
            # windows of the reference read on demand (VolumeSet.gather): only the candidates' voxels
            hit, trials = find_coordinate(lambda c, s, r=ref: volumes.gather(r, c, s), corners,
                                          np.asarray(coords, dtype=np.float64).reshape(-1, 3), crop, options,
                                          min_distance, reference_repeat_quirk)
            if hit < 0:
                plan["failed"].append(ref)
                logger.info("self-discovery: reference %s gave no corner in %d trials; trying another",
                            volumes.label(ref), trials)
                continue
            coord = [int(v) for v in corners[hit]]
            coords.append(coord)
            plan["classes"].append({"class": len(plan["classes"]), "reference": ref, "coordinate": coord,
                                    "trials": int(trials)})
            bar.update(1)
            since += 1
            if on_checkpoint is not None and since >= checkpoint_every and len(plan["classes"]) < n_classes:
                on_checkpoint(plan)
                since = 0
    finally:
        bar.close()
    return plan


# --------------------------------------------------------------------------------------------- #
# crops
# --------------------------------------------------------------------------------------------- #
def _clamp_corners(corners: np.ndarray, shape: Sequence[int], crop: Sequence[int]) -> np.ndarray:
    hi = np.asarray(shape, dtype=np.int64) - np.asarray(crop, dtype=np.int64)
    return np.clip(corners, 0, hi)


def multires_ranges(crop: Sequence[int], patch_range: Optional[Sequence[int]] = None,
                    jitter: Optional[int] = None) -> Tuple[int, int, int]:
    """(size low, size high exclusive, jitter j) of the multi-resolution draws along X.

    Defaults scale the reference's (50, 80) and 10 for a 64-voxel crop by ``crop[0] / 64``:
    s ~ U{low .. high - 1}, dx ~ U{-j .. j - 1}.
    """
    cx = int(crop[0])
    lo, hi = ((int(round(50 * cx / 64)), int(round(80 * cx / 64))) if patch_range is None
              else (int(patch_range[0]), int(patch_range[1])))
    j = int(round(10 * cx / 64)) if jitter is None else int(jitter)
    if lo < 1 or hi <= lo or j < 0:
        raise ValueError(f"multi-resolution patch_range must be (low, high) with 1 <= low < high and jitter >= 0, "
                         f"got {(lo, hi)}, {j}")
    return lo, hi, j


def draw_multires_boxes(rng: np.random.Generator, corners: np.ndarray, shapes: np.ndarray, crop: Sequence[int],
                        patch_range: Optional[Sequence[int]] = None, jitter: Optional[int] = None) -> np.ndarray:
    """The two multi-resolution boxes of each instance: int64 (K, 2, 5) rows (x0, y0, z0, sx, sy).

    ``corners`` (K, 3): the class corner on each instance's volume; ``shapes`` (K, 3): the volumes' shapes.
    Size s ~ U{low..high-1} and jitter (:func:`multires_ranges`) along X; along Y scaled by cy / cx (a
    square box for a square crop); z0 = the corner's z, depth = crop Z. Draws that leave the volume are
    redrawn (up to 100 times, then moved inside).
    """
    corners = np.asarray(corners, dtype=np.int64).reshape(-1, 3)
    shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 3)
    k = len(corners)
    cx, cy, _ = (int(c) for c in crop)
    lo, hi, j = multires_ranges(crop, patch_range, jitter)
    ry = cy / cx
    jy = int(round(j * ry))

    def draw(n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = rng.integers(lo, hi, n)
        dx = rng.integers(-j, j, n) if j > 0 else np.zeros(n, dtype=np.int64)
        dy = rng.integers(-jy, jy, n) if jy > 0 else np.zeros(n, dtype=np.int64)
        return s, dx, dy

    s, dx, dy = (a.reshape(k, 2) for a in draw(2 * k))
    x, y = corners[:, None, 0], corners[:, None, 1]
    X, Y = shapes[:, None, 0], shapes[:, None, 1]

    def sy_of(size: np.ndarray) -> np.ndarray:
        return np.maximum(1, np.rint(size * ry).astype(np.int64))

    for _ in range(_REDRAWS):
        bad = (x + dx < 0) | (x + dx + s > X) | (y + dy < 0) | (y + dy + sy_of(s) > Y)
        if not bad.any():
            break
        ns, ndx, ndy = draw(int(bad.sum()))
        s[bad], dx[bad], dy[bad] = ns, ndx, ndy
    sx = np.minimum(s, X)
    sy = np.minimum(sy_of(s), Y)
    x0 = np.clip(x + dx, 0, X - sx)
    y0 = np.clip(y + dy, 0, Y - sy)
    z0 = np.broadcast_to(corners[:, None, 2], (k, 2))
    return np.stack([x0, y0, z0, sx, sy], axis=-1).astype(np.int64)


def _linear_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 of 1-D linear resizing n_in -> n_out, as PyTorch's
    ``align_corners=False``: src = (i + 0.5) n_in / n_out - 0.5, clamped at 0; i1 = min(i0 + 1, n_in - 1)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _resize_axis(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Linear resize of ``a`` along ``axis`` to ``n_out`` (the same taps for every box of a batch)."""
    n_in = a.shape[axis]
    if n_in == n_out:
        return a
    i0, i1, w = _linear_taps(n_in, n_out)
    shape = [1] * a.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    out = np.take(a, i0, axis=axis)
    out *= 1.0 - w
    out += np.take(a, i1, axis=axis) * w
    return out


def resample_boxes(volume: Any, boxes: np.ndarray, crop: Sequence[int]) -> np.ndarray:
    """Boxes (B, 5) rows (x0, y0, z0, sx, sy) of ``volume`` (X, Y, Z), each resized to ``crop``: float32 (B, *crop).

    ``volume``: an array or a :data:`Windows` callable (e.g. :meth:`VolumeSet.gather` of one volume).

    Each box (sx x sy x crop Z, inside the volume) is resized in-plane with linear interpolation at the
    sample positions of ``F.interpolate(mode="trilinear", align_corners=False)`` (the depth is unchanged,
    so its trilinear weights are 0/1: the same values up to float rounding, ~1e-7). Boxes of one size
    share their taps: they are gathered with one fancy index and resized separably (X, then Y) in one
    NumPy pass (at most 30 sizes with the reference's 50..79 range), which avoids per-box kernel calls.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5)
    crop = tuple(int(c) for c in crop)
    out = np.empty((len(boxes),) + crop, dtype=np.float32)
    sizes = boxes[:, 3:5]
    windows = _window_getter(volume)
    for sx, sy in np.unique(sizes, axis=0):
        idx = np.flatnonzero((sizes[:, 0] == sx) & (sizes[:, 1] == sy))
        for s in range(0, len(idx), _BOXES_PER_CALL):  # bounded temporaries
            part = idx[s:s + _BOXES_PER_CALL]
            crops = np.asarray(windows(boxes[part, :3], (int(sx), int(sy), crop[2])), dtype=np.float32)
            out[part] = _resize_axis(_resize_axis(crops, 1, crop[0]), 2, crop[1])
    return out


def cut_crops(volumes: VolumeSet, corners: np.ndarray, neighbours: np.ndarray, crop: Sequence[int],
              out: np.ndarray, multi_boxes: Optional[np.ndarray] = None, multi_out: Sequence[np.ndarray] = (),
              progress: Any = None) -> None:
    """Fill ``out[c * K + j]`` with the crop at ``corners[c]`` of volume ``neighbours[c, j]``, volume by volume.

    Args:
        volumes: the volumes the neighbour indices refer to.
        corners: (m, 3) class corners; moved inside a volume smaller than corner + crop.
        neighbours: (m, K) volume indices.
        crop: (X, Y, Z).
        out: (m * K, *crop) array to fill (e.g. a memmap).
        multi_boxes: optional (m, K, 2, 5) boxes of :func:`draw_multires_boxes`, resampled into
            ``multi_out[0]`` and ``multi_out[1]`` (each (m * K, *crop)).
        progress: an object with ``update(n)`` (one per volume read).

    Each volume is visited once: its crops are one gather (:meth:`VolumeSet.gather`: for ``.npy`` volumes
    only the windows are read), its multi-resolution boxes one gather per box size.
    """
    m, k = neighbours.shape
    flat = neighbours.reshape(-1)
    corner_rows = np.repeat(np.asarray(corners, dtype=np.int64).reshape(m, 3), k, axis=0)
    boxes = None if multi_boxes is None else np.asarray(multi_boxes).reshape(m * k, 2, 5)
    order = np.argsort(flat, kind="stable")
    ids, starts = np.unique(flat[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for g, v in enumerate(ids):
        rows = order[bounds[g]:bounds[g + 1]]
        c = _clamp_corners(corner_rows[rows], volumes.shape(int(v)), crop)
        out[rows] = volumes.gather(int(v), c, crop)
        if boxes is not None:
            res = resample_boxes(lambda cs, size, v=int(v): volumes.gather(v, cs, size), boxes[rows].reshape(-1, 5),
                                 crop)
            multi_out[0][rows] = res[0::2]  # boxes (n, 2, 5) flattened: resolution 2, 3, 2, 3, ...
            multi_out[1][rows] = res[1::2]
        if progress is not None:
            progress.update(1)


# --------------------------------------------------------------------------------------------- #
# the run
# --------------------------------------------------------------------------------------------- #
def _class_rng(seed: int, class_index: int) -> np.random.Generator:
    # one generator per class: multi-resolution draws independent of chunking and resuming
    return np.random.default_rng([int(seed), 0x6D756C74, int(class_index)])


def _stream_chunk(writer: ChunkWriter, train: VolumeSet, validation: VolumeSet, coords: np.ndarray,
                  nb_train: np.ndarray, nb_val: np.ndarray, boxes: Optional[np.ndarray], lo: int, hi: int,
                  crop: Tuple[int, ...], resolutions: Sequence[int], dtype: str, bar: Any) -> None:
    """Classes lo..hi-1 cut in blocks of classes into reused buffers and appended to ``writer`` in file order."""
    K, Kv = nb_train.shape[1], nb_val.shape[1]
    per_class = (len(resolutions) * K + Kv) * int(np.prod(crop)) * np.dtype(dtype).itemsize
    block = max(1, min(hi - lo, _BLOCK_BYTES // per_class))
    bufs = {r: np.empty((block * K,) + crop, dtype=dtype) for r in resolutions}
    vbuf = np.empty((block * Kv,) + crop, dtype=dtype)
    try:
        for b0 in range(lo, hi, block):
            b1 = min(b0 + block, hi)
            n, nv = (b1 - b0) * K, (b1 - b0) * Kv
            multi = (bufs[2][:n], bufs[3][:n]) if boxes is not None else ()
            cut_crops(train, coords[b0:b1], nb_train[b0:b1], crop, bufs[1][:n],
                      None if boxes is None else boxes[b0 - lo:b1 - lo], multi)
            cut_crops(validation, coords[b0:b1], nb_val[b0:b1], crop, vbuf[:nv])
            for r in resolutions:
                writer.append("train", r, bufs[r][:n])
            writer.append("val", 1, vbuf[:nv])
            bar.update(b1 - b0)
    finally:
        bar.close()


def _check_crop_fits(volumes: VolumeSet, crop: Sequence[int]) -> None:
    small = [(volumes.label(i), s) for i, s in enumerate(volumes.shapes) if any(a < c for a, c in zip(s, crop))]
    if small:
        raise ValueError(f"the crop {tuple(crop)} is larger than {len(small)} {volumes.name} volume(s), e.g. "
                         f"{small[0][0]} of shape {small[0][1]}: lower crop (e.g. 32,32,16) or leave them out")


def generate_patterns(
    train: VolumeSet,
    validation: VolumeSet,
    train_features: np.ndarray,
    val_features: np.ndarray,
    save_dir: str,
    *,
    n_classes: int = 200,
    n_instances: int = 200,
    n_instances_val: int = 30,
    crop: Sequence[int] = REFERENCE_CROP,
    multi_res: bool = True,
    min_distance: float = 5.0,
    max_trials: int = 200,
    options: Optional[ExtractionOptions] = None,
    seed: int = 0,
    chunk_classes: int = REFERENCE_CHUNK_CLASSES,
    reference_repeat_quirk: bool = False,
    patch_range: Optional[Sequence[int]] = None,
    jitter: Optional[int] = None,
    dtype: str = "float32",
    progress: bool = True,
    extra: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Plan ``n_classes`` pattern classes and write their crops in the reference layout; resumable.

    Args:
        train / validation: the volumes (normalised lazily, see :class:`VolumeSet`); row i of
            ``train_features`` / ``val_features`` (float (N, F)) belongs to volume i.
        save_dir: output folder: ``train_data{r}_vwGen_ex_ref_fold{k}.0.npy`` / ``train_label{r}...``
            (r = 1, and 2, 3 with ``multi_res``), ``val_data1...`` / ``val_label1...`` per chunk k,
            ``datalist.json`` and ``discovery_state.json``.
        n_classes: C pattern classes (the reference generates 200 and trains on 44 or 50).
        n_instances / n_instances_val: K nearest training (200) / validation (30) volumes per class; the
            reference volume is training instance 0.
        crop: cube (X, Y, Z), 64x64x32 in the reference; e.g. 32x32x16 at demo scale.
        multi_res: also write resolutions 2 and 3 (see the module docstring for the size rule).
        min_distance: smallest Euclidean distance in voxels between two classes' corners (5).
        max_trials: corners tried per reference (200).
        options: border, rule, lung_max / tissue_min, len_depth, tissue threshold, intensity window
            (:class:`ExtractionOptions`; default the reference's: border 100/100/30, lung rule for CT).
        seed: the run's seed (NumPy generators).
        chunk_classes: classes per chunk file (50, the reference's ``fold{k}``).
        reference_repeat_quirk: reproduce the reference's never-reset ``repeated`` flag (default off).
        patch_range / jitter: multi-resolution sizes and jitter along X (default: scaled from 50..79, 10).
        dtype: "float32" (default) or "float64" (the reference's) data files.
        progress: progress bars.
        extra: more settings recorded in the state (checked on resume), e.g. the feature settings.

    Returns:
        ``{"save_dir", "n_classes", "n_instances", "n_instances_val", "crop", "resolutions", "chunks",
        "chunks_written", "chunks_kept", "train_cubes", "val_cubes", "references_tried",
        "references_failed", "datalist", "state", "seconds"}``.

    Raises:
        ValueError: fewer usable training volumes than ``n_instances`` (or validation volumes than
            ``n_instances_val``), ``n_classes`` larger than the possible references, a crop larger than
            a volume, features that do not match the volumes, or a folder holding a run with other settings.
    """
    t0 = time.perf_counter()
    opts = options if options is not None else ExtractionOptions()
    crop = tuple(int(c) for c in crop)
    if len(crop) != 3 or min(crop) < 1:
        raise ValueError(f"crop must be 3 positive sizes (X, Y, Z), got {crop}")
    C, K, Kv = int(n_classes), int(n_instances), int(n_instances_val)
    if C < 1 or K < 1 or Kv < 1 or int(chunk_classes) < 1 or int(max_trials) < 1:
        raise ValueError(f"n_classes, n_instances, n_instances_val, chunk_classes and max_trials must be >= 1, got "
                         f"{C}, {K}, {Kv}, {chunk_classes}, {max_trials}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if multi_res:
        multires_ranges(crop, patch_range, jitter)  # validate before any work
    if any(c % 8 for c in crop):
        # said now, not when training reads the files hours later
        logger.warning("self-discovery: crop %s is not divisible by 8: the Genesis UNet3D cannot train on these "
                       "cubes as they are (e.g. 64,64,32 or 32,32,16)", crop)
    train_features = np.asarray(train_features)
    val_features = np.asarray(val_features)
    for vs, feats in ((train, train_features), (validation, val_features)):
        if feats.ndim != 2 or len(feats) != len(vs):
            raise ValueError(f"{vs.name} features {feats.shape} do not match the {len(vs)} {vs.name} volumes")
    if len(train) < K:
        raise ValueError(f"n_instances={K} nearest training volumes are needed per class, but only {len(train)} "
                         "training volumes are usable: lower n_instances or add volumes")
    if len(validation) < Kv:
        raise ValueError(f"n_instances_val={Kv} nearest validation volumes are needed per class, but only "
                         f"{len(validation)} validation volumes are usable: lower n_instances_val or add volumes")
    _check_crop_fits(train, crop)
    _check_crop_fits(validation, crop)

    settings = {
        "n_classes": C, "n_instances": K, "n_instances_val": Kv, "crop": crop, "multi_res": bool(multi_res),
        "min_distance": float(min_distance), "max_trials": int(max_trials), "seed": int(seed),
        "chunk_classes": int(chunk_classes), "reference_repeat_quirk": bool(reference_repeat_quirk),
        "patch_range": None if not multi_res else list(multires_ranges(crop, patch_range, jitter)[:2]),
        "jitter": None if not multi_res else multires_ranges(crop, patch_range, jitter)[2],
        "dtype": dtype, "rule": opts.effective_rule, "border": opts.border, "len_depth": opts.len_depth,
        "lung_max": opts.lung_max, "tissue_min": opts.tissue_min, "threshold": normalised_threshold(opts),
        "training_volumes": train.labels, "validation_volumes": validation.labels,
        **dict(extra or {}),
    }
    os.makedirs(save_dir, exist_ok=True)
    state = read_state(save_dir) or {}
    pstate = state.get("patterns")
    if pstate is not None:
        diffs = settings_differences(pstate["settings"], settings, may_grow=("n_classes",))
        if diffs:
            raise ValueError(f"{save_dir} holds a self-discovery run with other settings ({'; '.join(diffs)}): "
                             "use a new output folder (or the same settings to resume)")
    else:
        pstate = {"classes": [], "tried": [], "failed": [], "rng": None,
                  "neighbours": {"training": [], "validation": []}, "chunks": {}}
    pstate["settings"] = settings
    state["patterns"] = pstate

    def save(plan: Optional[Dict[str, Any]] = None) -> None:
        pstate["rng"] = rng.bit_generator.state
        write_state(save_dir, state)

    # 1. plan (references and corners), continuing from the recorded generator position
    rng = np.random.default_rng(int(seed))
    if pstate["rng"] is not None:
        rng.bit_generator.state = pstate["rng"]
    if len(pstate["classes"]) < C:
        # saved with the neighbours below (a run killed in between replans identically from the last checkpoint)
        plan_classes(train, C, crop, opts, rng, pstate, min_distance, int(max_trials), bool(reference_repeat_quirk),
                     int(chunk_classes), on_checkpoint=save, progress=progress)
    classes = pstate["classes"][:C]
    refs = np.array([c["reference"] for c in classes], dtype=np.int64)
    coords = np.array([c["coordinate"] for c in classes], dtype=np.int64).reshape(-1, 3)

    # 2. neighbours of every class not yet ranked: one distance matrix per split
    nb = pstate["neighbours"]
    done = len(nb["training"])
    if done < C:
        new = refs[done:]
        nb["training"] += nearest_neighbours(train_features[new], train_features, K, first=new).tolist()
        nb["validation"] += nearest_neighbours(train_features[new], val_features, Kv).tolist()
        save()
    nb_train = np.asarray(nb["training"][:C], dtype=np.int64)
    nb_val = np.asarray(nb["validation"][:C], dtype=np.int64)

    # 3. chunks
    resolutions = (1, 2, 3) if multi_res else (1,)
    cc = int(chunk_classes)
    parts = list(range(1, math.ceil(C / cc) + 1))
    written, kept = [], []
    train_shapes = np.asarray(train.shapes, dtype=np.int64)
    # memory-mapped volumes: cut class by class and stream the rows to the files (nothing assembled);
    # volumes that must be read whole: cut volume by volume into the chunk's arrays (each read once)
    stream = train.reads_windows and validation.reads_windows
    for part in parts:
        lo, hi = (part - 1) * cc, min(part * cc, C)
        m = hi - lo
        record = pstate["chunks"].get(str(part))
        if record is not None and record.get("classes") == [lo, hi] and chunk_is_complete(
                save_dir, part, resolutions, m * K, m * Kv):
            kept.append(part)
            continue
        boxes = None
        if multi_res:
            boxes = np.stack([
                draw_multires_boxes(_class_rng(seed, c), _clamp_corners(
                    np.broadcast_to(coords[c], (K, 3)), train_shapes[nb_train[c]], crop),
                    train_shapes[nb_train[c]], crop, patch_range, jitter)
                for c in range(lo, hi)])
        labels = np.arange(lo, hi, dtype=np.float64)
        desc = f"self-discovery: chunk {part}/{len(parts)} (classes {lo}-{hi - 1})"
        with ChunkWriter(save_dir, part, m * K, m * Kv, crop, resolutions, dtype, stream=stream) as w:
            if stream:
                _stream_chunk(w, train, validation, coords, nb_train, nb_val, boxes, lo, hi, crop, resolutions,
                              dtype, progress_bar(m, desc, progress))
            else:
                bar = progress_bar(len(np.unique(nb_train[lo:hi])) + len(np.unique(nb_val[lo:hi])), desc, progress)
                try:
                    cut_crops(train, coords[lo:hi], nb_train[lo:hi], crop, w.train[1], boxes,
                              (w.train[2], w.train[3]) if multi_res else (), bar)
                    cut_crops(validation, coords[lo:hi], nb_val[lo:hi], crop, w.val, progress=bar)
                finally:
                    bar.close()
            w.commit(np.repeat(labels, K), np.repeat(labels, Kv))
        pstate["chunks"][str(part)] = {"classes": [lo, hi]}
        save()
        written.append(part)

    datalist = write_discovery_datalist(save_dir, parts, resolutions, {
        "n_classes": C, "n_instances": K, "n_instances_val": Kv, "crop": list(crop), "multi_res": bool(multi_res),
        "chunk_classes": cc})
    return {
        "save_dir": os.path.abspath(save_dir), "n_classes": C, "n_instances": K, "n_instances_val": Kv,
        "crop": crop, "resolutions": list(resolutions), "chunks": parts, "chunks_written": written,
        "chunks_kept": kept, "train_cubes": C * K * len(resolutions), "val_cubes": C * Kv,
        "references_tried": len(pstate["tried"]), "references_failed": len(pstate["failed"]),
        "datalist": datalist, "state": os.path.join(os.path.abspath(save_dir), "discovery_state.json"),
        "seconds": time.perf_counter() - t0,
    }
