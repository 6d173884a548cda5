"""Cube extraction for Models Genesis pretraining: CT/MRI volume (X, Y, Z) -> cubes (n, 64, 64, 32) in [0, 1].

This is the reference LUNA16 cube generator (METHODS.md §1, research/upstream_genesis.md §3)
re-written with array operations:

* intensities: CT clipped to the HU window [-1000, 1000] and scaled to [0, 1]; MRI clipped to a
  fixed window (default 0..4000, the reference README's advice) or scaled by each image's own
  min..max (the authors' advice in ModelsGenesis #36): the presets of
  :mod:`genesis_monai.data.intensity` (:func:`intensity_window`);
* candidate corners drawn uniformly with a border of ``border`` voxels from the volume edges,
  crop ``crop`` plus ``len_depth`` look-ahead slices (64 x 64 x (32 + 3));
* the rejection ("lung") rule: a voxel of the first ``crop[2]`` slices scores 1 if it is dense
  (>= the tissue threshold, -150 HU), 0.5 if only the next slice is dense, else 0; a crop whose
  summed score exceeds ``lung_max`` (0.15) of the cube volume is rejected;
* up to ``tries_factor * scale`` (50 * 32) candidates per volume, stopping at ``scale`` accepted.

What differs from the reference loop, and why:

* candidates are scored in batches (a gather of K crops at once, or a 3D summed-volume table of
  the per-voxel score when many candidates are needed, which makes every crop's score O(1));
  the *decision* for each candidate equals the literal per-voxel rule (tests/reference_cubes.py),
  and the accepted cubes are the first ``scale`` accepted candidates of the drawn sequence, as in
  the sequential reference loop;
* the random stream is NumPy's (the reference used Python's ``random`` seeded with 1), so the
  same seed gives the same cubes here, not the reference's exact cubes;
* cubes are float32 (the reference stored float64);
* volumes too small for crop + borders raise :class:`VolumeTooSmallError` saying what size was
  needed (the reference skipped them silently, and checked only the slice count);
* the foreground rule is configurable (``rule``): ``"lung"`` (reference), ``"tissue"`` (the inverse:
  keep crops with at least ``tissue_min`` dense score, e.g. for abdominal CT or MRI), ``"off"``.

Every option is a field of :class:`genesis_monai.data.extraction_options.ExtractionOptions`
(declared and validated there once).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from genesis_monai.data.extraction_options import RULES, ExtractionOptions, as_extraction_options
from genesis_monai.data.intensity import MODALITIES, intensity_window, normalise_intensity

__all__ = [
    "extract_cubes",
    "VolumeTooSmallError",
    "intensity_window",
    "normalise_intensity",
    "corner_ranges",
    "draw_corners",
    "crop_scores",
    "rejection_decisions",
    "volume_score_table",
    "RULES",
    "MODALITIES",
    "MRI_TISSUE_THRESHOLD",
]

#: default dense threshold for MRI in normalised units (just above the dark background); our
#: choice, the reference has no MRI rule
MRI_TISSUE_THRESHOLD = 0.05
#: most bytes of candidate crops gathered in one batch (bounds memory: ~120 crops of 64x64x33 float32)
_GATHER_BYTES = 64 * 2**20
#: most candidates per gathered batch (cache-sized batches were fastest on a 2-core CPU)
_GATHER_MAX = 32
#: cost of building the summed-volume table, in voxel-gathers per voxel of the region it covers
#: (measured on a 2-core CPU: ~0.2 s for a 311x311x137 region vs ~0.9 ms per 64x64x33 gather)
_TABLE_COST = 2.5
#: the options used when none are given
_DEFAULT_OPTIONS = ExtractionOptions()

ArrayLike = Union[np.ndarray, "torch.Tensor"]  # noqa: F821 - torch only named for type readers


class VolumeTooSmallError(ValueError):
    """The volume cannot hold one crop plus its borders; the message says which size is needed."""


# --------------------------------------------------------------------------------------------- #
# candidate corners
# --------------------------------------------------------------------------------------------- #
def corner_ranges(
    shape: Sequence[int], crop: Sequence[int] = _DEFAULT_OPTIONS.crop, len_depth: int = _DEFAULT_OPTIONS.len_depth,
    border: Sequence[int] = _DEFAULT_OPTIONS.border,
) -> Tuple[np.ndarray, np.ndarray]:
    """Inclusive (low, high) corner ranges per axis, as the reference draws them.

    x in [bx, X - cx - 1 - bx], y likewise, z in [bz, Z - cz - len_depth - 1 - bz] (the reference's
    ``randint`` bounds, including its ``- 1``). Raises :class:`VolumeTooSmallError` naming the
    minimal shape when any range is empty (the reference skipped volumes with fewer than 96 slices).
    """
    shape = tuple(int(s) for s in shape)
    crop = tuple(int(c) for c in crop)
    border = tuple(int(b) for b in border)
    if len(shape) != 3 or len(crop) != 3 or len(border) != 3:
        raise ValueError(f"shape, crop and border must have 3 entries, got {shape}, {crop}, {border}")
    extent = (crop[0], crop[1], crop[2] + int(len_depth))  # what one candidate reads
    low = np.array(border, dtype=np.int64)
    high = np.array([s - e - 1 - b for s, e, b in zip(shape, extent, border)], dtype=np.int64)
    if np.any(high < low):
        need = tuple(e + 1 + 2 * b for e, b in zip(extent, border))
        raise VolumeTooSmallError(
            f"volume too small: shape {shape} needs at least {need} for a crop of "
            f"{crop[0]}x{crop[1]}x({crop[2]}+{len_depth}) with border {border} "
            f"(lower `border`, e.g. border=(8, 8, 4), to use small volumes)")
    return low, high


def draw_corners(rng: np.random.Generator, n: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``n`` corners (n, 3) int64, uniform on the inclusive ranges [low, high] per axis.

    Uses one ``rng.random`` double per coordinate so that drawing in batches of any sizes gives
    the same sequence as drawing all at once (``Generator.integers`` buffers bits per call): the
    accepted cubes then do not depend on how candidates were batched.
    """
    u = rng.random((int(n), 3))
    span = (high - low + 1).astype(np.float64)
    corners = low + np.floor(u * span).astype(np.int64)
    return np.minimum(corners, high)  # guard the u * span == span rounding corner case


# --------------------------------------------------------------------------------------------- #
# the rejection rule, vectorised
# --------------------------------------------------------------------------------------------- #
def _double_scores(dense: np.ndarray, deps: int, len_depth: int) -> np.ndarray:
    """Twice the per-crop score (integers, exact) of boolean crops ``dense`` (K, X, Y, >= deps + 1).

    Per voxel of slice d < deps: 2 if dense[d]; 1 if not dense[d] but dense[d + 1] (len_depth >= 2);
    0 otherwise. Working with twice the score keeps the sums integral, hence the comparison with the
    limit exactly as in the float64 reference.
    """
    k = dense.shape[0]
    dense = np.ascontiguousarray(dense[..., : deps + 1])
    # count the first `deps` slices as (all) - (the extra slice): no copy of a strided view
    cur = np.count_nonzero(dense.reshape(k, -1), axis=1)
    if dense.shape[-1] > deps:
        cur = cur - np.count_nonzero(dense[..., deps].reshape(k, -1), axis=1)
    total = 2 * cur
    if len_depth >= 2:
        step = dense[..., 1 : deps + 1] > dense[..., :deps]  # bool >: dense next slice, not this one
        total = total + np.count_nonzero(step.reshape(k, -1), axis=1)
    return np.asarray(total, dtype=np.int64)


def _typed_threshold(dtype: np.dtype, thr: float) -> Tuple[Any, Optional[bool]]:
    """A threshold of the array's own dtype with ``v >= t`` exactly equal to ``v >= thr``.

    Comparing an int16 or float32 array with a Python float would upcast the whole crop batch to
    float64; this keeps the comparison in the array's dtype. Returns (t, constant) where constant
    is True/False when every/no value passes.
    """
    if math.isinf(thr) or math.isnan(thr):
        return thr, (thr < 0) if not math.isnan(thr) else False
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        t = math.ceil(thr)
        if t <= info.min:
            return info.min, True
        if t > info.max:
            return info.max, False
        return dtype.type(t), None
    if np.issubdtype(dtype, np.floating):
        t = dtype.type(thr)
        if float(t) < thr:  # rounded down: the next representable value is the exact cut
            t = np.nextafter(t, dtype.type(np.inf))
        return t, None
    return thr, None


def _dense(values: np.ndarray, thr: float) -> np.ndarray:
    t, constant = _typed_threshold(values.dtype, thr)
    if constant is not None:
        return np.full(values.shape, constant, dtype=bool)
    return values >= t


def crop_scores(crops: np.ndarray, threshold: float, deps: Optional[int] = None,
                len_depth: int = _DEFAULT_OPTIONS.len_depth) -> np.ndarray:
    """The reference tissue score of each crop, (K,) float64.

    Args:
        crops: (K, X, Y, D) or (X, Y, D) normalised (or raw) intensities with D >= deps + min(len_depth, 2) - 1.
        threshold: a voxel is dense when its value >= threshold (0.425 for -150 HU in the CT window).
        deps: slices scored (default D - len_depth).
        len_depth: look-ahead slices of the reference (3): only the next slice can score 0.5.
    """
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if deps is None:
        deps = crops.shape[-1] - int(len_depth)
    if crops.shape[-1] < deps + (1 if len_depth >= 2 else 0):
        raise ValueError(f"crops of depth {crops.shape[-1]} cannot be scored on {deps} slices "
                         f"with len_depth={len_depth}")
    return _double_scores(_dense(crops, threshold), int(deps), int(len_depth)) / 2.0


def _limits(rule: str, n_vox: int, lung_max: float, tissue_min: float) -> Tuple[str, float]:
    if rule == "lung":
        return rule, 2.0 * float(lung_max) * n_vox
    if rule == "tissue":
        return rule, 2.0 * float(tissue_min) * n_vox
    return rule, 0.0


def _reject(double_scores: np.ndarray, rule: str, limit2: float) -> np.ndarray:
    if rule == "lung":
        return double_scores > limit2  # reference: reject if sum > lung_max * volume (strict)
    if rule == "tissue":
        return double_scores < limit2
    return np.zeros(double_scores.shape, dtype=bool)


def rejection_decisions(
    crops: np.ndarray,
    threshold: float = 0.425,
    lung_max: float = _DEFAULT_OPTIONS.lung_max,
    *,
    deps: Optional[int] = None,
    len_depth: int = _DEFAULT_OPTIONS.len_depth,
    rule: str = "lung",
    tissue_min: float = _DEFAULT_OPTIONS.tissue_min,
) -> np.ndarray:
    """True where the crop is rejected, (K,) bool, for crops (K, X, Y, deps + len_depth) of normalised values.

    ``rule="lung"``: reject when the score > ``lung_max`` * X * Y * deps (the reference rule);
    ``"tissue"``: reject when the score < ``tissue_min`` * X * Y * deps; ``"off"``: never.
    """
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if deps is None:
        deps = crops.shape[-1] - int(len_depth)
    n_vox = crops.shape[1] * crops.shape[2] * int(deps)
    rule, limit2 = _limits(rule, n_vox, lung_max, tissue_min)
    return _reject(_double_scores(_dense(crops, threshold), int(deps), int(len_depth)), rule, limit2)


def volume_score_table(dense: np.ndarray, len_depth: int = _DEFAULT_OPTIONS.len_depth) -> np.ndarray:
    """Summed-volume table of twice the per-voxel score of a boolean volume ``dense`` (X, Y, Z).

    Returns S with shape (X + 1, Y + 1, Z) (Z - 1 scored slices when len_depth >= 2, since slice d
    looks at d + 1) such that the doubled score of the box [x0, x1) x [y0, y1) x [z0, z1) is the
    8-term inclusion-exclusion of S; integer dtype wide enough to be exact.
    """
    if len_depth >= 2:
        w2 = 2 * dense[..., :-1].astype(np.uint8) + (dense[..., 1:] > dense[..., :-1])
    else:
        w2 = 2 * dense.astype(np.uint8)
    dtype = np.int32 if 2 * w2.size < 2**31 else np.int64
    table = np.zeros((w2.shape[0] + 1, w2.shape[1] + 1, w2.shape[2] + 1), dtype=dtype)
    np.cumsum(w2, axis=0, dtype=dtype, out=table[1:, 1:, 1:])
    np.cumsum(table[1:, 1:, 1:], axis=1, out=table[1:, 1:, 1:])
    np.cumsum(table[1:, 1:, 1:], axis=2, out=table[1:, 1:, 1:])
    return table


def _box_sums(table: np.ndarray, corners: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Sums of the boxes [c, c + size) for corners (K, 3) from a table of :func:`volume_score_table`."""
    x0, y0, z0 = corners[:, 0], corners[:, 1], corners[:, 2]
    x1, y1, z1 = x0 + size[0], y0 + size[1], z0 + size[2]

    def at(x, y, z):  # gather first, widen after: never copy the whole table
        return table[x, y, z].astype(np.int64)

    return (at(x1, y1, z1) - at(x0, y1, z1) - at(x1, y0, z1) - at(x1, y1, z0)
            + at(x0, y0, z1) + at(x0, y1, z0) + at(x1, y0, z0) - at(x0, y0, z0))


# --------------------------------------------------------------------------------------------- #
# the extractor
# --------------------------------------------------------------------------------------------- #
def _as_numpy(volume: Any) -> np.ndarray:
    # not monai.utils.convert_to_numpy: importing MONAI costs seconds and this module needs only NumPy
    if hasattr(volume, "detach") and hasattr(volume, "cpu"):  # torch.Tensor / MetaTensor
        volume = volume.detach().cpu().numpy()
    return np.asarray(volume)


def _raw_threshold(t_norm: float, lo: float, hi: float) -> float:
    """A raw-intensity threshold equivalent to ``normalised >= t_norm`` after clipping to [lo, hi]."""
    if t_norm <= 0.0:
        return -math.inf  # everything is >= 0 after clipping
    if t_norm > 1.0:
        return math.inf  # nothing exceeds 1 after clipping
    return lo + t_norm * (hi - lo)


def extract_cubes(
    volume: ArrayLike,
    scale: Optional[int] = None,
    modality: Optional[str] = None,
    seed: Union[None, int, np.random.Generator] = None,
    *,
    options: Optional[ExtractionOptions] = None,
    return_info: bool = False,
    **option_overrides: Any,
) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, Any]]]:
    """Cut up to ``scale`` pretraining cubes out of one volume, as the reference LUNA16 generator does.

    Args:
        volume: (X, Y, Z) array (NumPy or torch) in HU for CT, raw intensities for MRI; axis order
            as the reference (SimpleITK array transposed to x, y, z; MONAI's readers give it).
        scale: cubes wanted per volume (default 32, as in the paper); fewer come back when candidates
            run out.
        modality: ``"ct"`` (default), ``"mri"`` (= ``"mri_fixed"``: clip to ``mri_window``) or
            ``"mri_minmax"``.
        seed: int / None / ``np.random.Generator``; the same int gives the same cubes.
        options: an :class:`~genesis_monai.data.extraction_options.ExtractionOptions` (default: the
            reference recipe); ``scale``, ``modality`` and ``option_overrides`` are applied on top.
        return_info: also return ``{"corners": (n, 3) accepted corners, "tries": candidates tested,
            "window": (lo, hi), "threshold": raw dense threshold, "rule", "method", "score_range":
            (lowest, highest) dense score of the tested candidates as a fraction of the cube volume}``.
        **option_overrides: any field of ``ExtractionOptions`` by name, the ones used here being
            ``crop`` (output cube X, Y, Z; a candidate reads ``len_depth`` more slices), ``len_depth``,
            ``border`` (voxels kept free from the edges: 100, 100, 30 in the reference, e.g. 8, 8, 4
            for small volumes), ``rule`` (``"lung"``: reject when the dense score > ``lung_max`` *
            cube volume; ``"tissue"``: reject when < ``tissue_min`` * cube volume; ``"off"``;
            ``"auto"``: lung for CT, tissue for MRI), ``lung_max``, ``tissue_min``,
            ``tissue_threshold_hu`` (dense threshold in the volume's units, -150), ``tissue_threshold``
            (in normalised units, overriding it; MRI default :data:`MRI_TISSUE_THRESHOLD`),
            ``hu_window``, ``mri_window``, ``mri_normalization``, ``window``, ``tries_factor`` (at most
            ``tries_factor * scale`` candidates) and ``method`` (``"gather"``: score batches of gathered
            crops; ``"table"``: a summed-volume table; ``"auto"``: gather, switching to the table when
            the candidates still expected would cost more to gather; all give identical cubes).

    Returns:
        float32 array (n, X, Y, Z) in [0, 1], n <= scale (n = 0 when no candidate passes).

    Raises:
        VolumeTooSmallError: the volume cannot hold crop + borders (the message gives the size needed).
        ValueError: not a 3D array, non-finite values, bad options (named).
    """
    changes = dict(option_overrides)
    changes.update({k: v for k, v in (("scale", scale), ("modality", modality)) if v is not None})
    opts = as_extraction_options(options if options is not None else _DEFAULT_OPTIONS, **changes)
    vol = _as_numpy(volume)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z), got shape {vol.shape}")
    if not np.issubdtype(vol.dtype, np.number) or np.issubdtype(vol.dtype, np.complexfloating):
        raise ValueError(f"expected a real-valued volume, got dtype {vol.dtype}")
    scale, crop, len_depth, method = opts.scale, opts.crop, opts.len_depth, opts.method
    low, high = corner_ranges(vol.shape, crop, len_depth, opts.border)
    lo, hi = intensity_window(vol, opts.preset, hu_window=opts.hu_window, mri_window=opts.mri_window,
                              window=opts.window)
    rule = opts.effective_rule
    if opts.tissue_threshold is not None:
        thr = _raw_threshold(opts.tissue_threshold, lo, hi)
    elif opts.preset == "ct":
        thr = opts.tissue_threshold_hu  # HU directly: for integer HU this is exactly the reference's 0.425 test
    else:
        thr = _raw_threshold(MRI_TISSUE_THRESHOLD, lo, hi)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    cx, cy, cz = crop
    depth = cz + (1 if len_depth >= 2 else 0)  # slices the rule reads per candidate (d and d + 1)
    windows = sliding_window_view(vol, (cx, cy, max(depth, cz)))
    n_vox = cx * cy * cz
    rule, limit2 = _limits(rule, n_vox, opts.lung_max, opts.tissue_min)
    max_tries = opts.tries_factor * scale

    accepted: list = []  # corners, in candidate order
    seen = (2 * n_vox + 1, -1)  # lowest / highest doubled score among tested candidates (for messages)
    kept: list = []  # raw crops of accepted candidates gathered on the way (gather path)
    tries = 0
    used = "off"
    if rule == "off":
        accepted = list(draw_corners(rng, scale, low, high))
        tries = scale
    else:
        used = "gather" if method != "table" else "table"
        # region any candidate can touch: the table only needs this part of the volume
        r0 = low
        r1 = high + np.array([cx, cy, depth])
        region_vox = int(np.prod(r1 - r0))
        per_crop_bytes = cx * cy * depth * vol.itemsize
        per_crop_vox = cx * cy * depth
        n_ok = n_seen = 0  # acceptance so far, to size the next batch
        while len(accepted) < scale and tries < max_tries:
            need = scale - len(accepted)
            left = max_tries - tries
            rate = (n_ok + 1) / (n_seen + 2)  # Laplace estimate; 0.5 before the first batch
            if used == "gather" and method == "auto" and n_seen:
                # switch when the candidates still expected would cost more to gather than building
                # the summed-volume table once (after which every candidate is O(1))
                expected = min(left, need / rate)
                if expected * per_crop_vox > _TABLE_COST * region_vox:
                    used = "table"
            if used == "table":
                dense = _dense(vol[r0[0]:r1[0], r0[1]:r1[1], r0[2]:r1[2]], thr)
                table = volume_score_table(dense, len_depth)
                corners = draw_corners(rng, left, low, high)
                scores = _box_sums(table, corners - r0, (cx, cy, cz))
                seen = (min(seen[0], int(scores.min())), max(seen[1], int(scores.max())))
                keep = np.flatnonzero(~_reject(scores, rule, limit2))[:need]
                accepted.extend(corners[keep])
                tries = max_tries if len(keep) < need else tries + int(keep[-1]) + 1
                break
            # small batches: a batch costs little fixed overhead, and candidates drawn past the
            # `scale`-th acceptance are wasted work
            k = int(math.ceil(need / max(rate, 0.02)))
            k = max(1, min(k, left, _GATHER_MAX, max(1, _GATHER_BYTES // per_crop_bytes)))
            corners = draw_corners(rng, k, low, high)
            crops = windows[corners[:, 0], corners[:, 1], corners[:, 2]]  # (k, cx, cy, depth) copy
            scores = _double_scores(_dense(crops, thr), cz, len_depth)
            seen = (min(seen[0], int(scores.min())), max(seen[1], int(scores.max())))
            ok = np.flatnonzero(~_reject(scores, rule, limit2))
            take = ok[:need]
            accepted.extend(corners[take])
            kept.append(crops[take, :, :, :cz])  # reuse the gathered voxels for the output
            # candidates after the `scale`-th acceptance were not needed: count tries as the loop would
            tries += k if len(take) < need else int(take[-1]) + 1
            n_ok += len(ok)
            n_seen += k

    corners = np.asarray(accepted, dtype=np.int64).reshape(-1, 3)
    n_kept = sum(len(c) for c in kept)
    if n_kept < len(corners):  # corners accepted without a gather (table path, rule "off")
        rest = corners[n_kept:]
        kept.append(windows[rest[:, 0], rest[:, 1], rest[:, 2]][..., :cz])
    if len(corners):
        raw = np.concatenate(kept, axis=0) if len(kept) > 1 else kept[0]
        cubes = normalise_intensity(raw, lo, hi)
    else:
        cubes = np.zeros((0, cx, cy, cz), dtype=np.float32)
    if return_info:
        score_range = (seen[0] / (2.0 * n_vox), seen[1] / (2.0 * n_vox)) if seen[1] >= 0 else None
        return cubes, {"corners": corners, "tries": tries, "window": (lo, hi), "threshold": thr,
                       "rule": rule, "method": used, "score_range": score_range}
    return cubes
