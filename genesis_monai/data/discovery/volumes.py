"""Whole volumes for self-discovery: listed, read lazily, normalised to [0, 1], resized for the feature network.

Semantic Genesis / TransVW self-discovery (research/upstream_genesis.md §6.1-6.3) works on whole
patient volumes twice: once resized to 128x128x64 for the auto-encoder features, and once at full
resolution to cut the pattern crops. :class:`VolumeSet` serves both without holding every volume in
memory: a volume is read, normalised with the intensity preset (CT: HU window [-1000, 1000] -> [0, 1])
and kept only until the next one is asked for.

Sources are NIfTI / MetaImage / NRRD files or DICOM series folders (read with
:func:`genesis_monai.data.readers.read_volume`), ``.npy`` arrays (X, Y, Z) (the reference's
``dataset/train/*.npy`` layout; with ``is_normalized=True`` they are taken as already in [0, 1], the
reference's ``--is_normalized``), or in-memory arrays. An unreadable or unsuitable volume is skipped with
one WARNING line naming the file and the reason, never silently.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

from genesis_monai.data.extraction_options import ExtractionOptions
from genesis_monai.data.intensity import intensity_window, normalise_intensity
from genesis_monai.data.readers import MissingReaderError, VolumeReadError, list_volumes, read_volume
from genesis_monai.data.volume_checks import intensity_problem, one_line

logger = logging.getLogger(__name__)

__all__ = ["Source", "VolumeSet", "list_sources", "split_sources", "resize_volumes", "REFERENCE_SPLIT_DIRS"]

#: a volume: a file / DICOM folder path, or an (X, Y, Z) array
Source = Union[str, np.ndarray]
#: sub-folders of the reference layout ``dataset/train/*.npy`` + ``dataset/validation/*.npy``
REFERENCE_SPLIT_DIRS = ("train", "validation")
#: slack allowed above 1 / below 0 for ``is_normalized`` volumes (float rounding of the writer)
_RANGE_SLACK = 1e-3


def _npy_files(folder: str, exclude: Sequence[str] = ()) -> List[str]:
    excluded = {os.path.abspath(e) for e in exclude}
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.abspath(os.path.join(root, d))
                         not in excluded)
        out += [os.path.join(root, f) for f in files if f.endswith(".npy") and not f.startswith(".")]
    return sorted(out)


def list_sources(data: Union[str, Sequence[str]], exclude: Sequence[str] = ()) -> List[str]:
    """Sorted volume paths of ``data``: a folder (volume files, DICOM series, ``.npy`` arrays), a list of paths,
    or a datalist JSON (``{"training": [{"image": path} | path, ...]}``, paths relative to the JSON's folder).

    ``exclude``: folders left out (e.g. the output folder when it lies inside ``data``).
    Raises FileNotFoundError when ``data`` does not exist.
    """
    if isinstance(data, (list, tuple)):
        missing = [p for p in data if not os.path.exists(str(p))]
        if missing:
            raise FileNotFoundError(f"{len(missing)} volume path(s) do not exist, e.g. {missing[0]!r}")
        return [str(p) for p in data]
    data = str(data)
    if data.endswith(".json") and os.path.isfile(data):
        return _datalist_sources(data, "training")
    if not os.path.isdir(data):
        raise FileNotFoundError(f"volume folder {data!r} does not exist")
    found = set(list_volumes(data, exclude=exclude)) | set(_npy_files(data, exclude))
    return sorted(found)


def _datalist_sources(path: str, key: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON datalist ({err})") from err
    records = content.get(key, []) if isinstance(content, dict) else []
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for r in records:
        p = r.get("image") if isinstance(r, dict) else r
        if not isinstance(p, str):
            raise ValueError(f"{path}: {key} records must be paths or {{'image': path}}, got {r!r}")
        out.append(p if os.path.isabs(p) else os.path.join(base, p))
    return out


def split_sources(data: Union[str, Sequence[str]], validation_data: Union[None, str, Sequence[str]] = None,
                  val_fraction: float = 0.2, seed: int = 0,
                  exclude: Sequence[str] = ()) -> Tuple[List[str], List[str], str]:
    """(training paths, validation paths, how) for self-discovery.

    In order of precedence: ``validation_data`` given (its volumes; ``data`` is all training); ``data``
    holds ``train/`` and ``validation/`` sub-folders (the reference layout); a datalist JSON with a
    ``validation`` key; else a seeded random ``val_fraction`` of ``data`` (at least one volume).
    ``how`` says which rule applied (for the summary).
    """
    if validation_data is not None:
        return list_sources(data, exclude), list_sources(validation_data, exclude), "validation_data"
    if isinstance(data, str) and os.path.isdir(data) and all(
            os.path.isdir(os.path.join(data, d)) for d in REFERENCE_SPLIT_DIRS):
        tr, va = (list_sources(os.path.join(data, d), exclude) for d in REFERENCE_SPLIT_DIRS)
        return tr, va, "train/ and validation/ sub-folders"
    if isinstance(data, str) and data.endswith(".json") and os.path.isfile(data):
        va = _datalist_sources(data, "validation")
        if va:
            return _datalist_sources(data, "training"), va, "datalist training/validation"
    sources = list_sources(data, exclude)
    frac = float(val_fraction)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r} (or pass validation_data)")
    n_val = min(max(1, int(round(frac * len(sources)))), max(len(sources) - 1, 0))
    pick = np.zeros(len(sources), dtype=bool)
    pick[np.random.default_rng(int(seed)).permutation(len(sources))[:n_val]] = True
    return ([s for s, p in zip(sources, pick) if not p], [s for s, p in zip(sources, pick) if p],
            f"random {frac:g} of the volumes (seed {int(seed)})")


def _drop_trailing_singletons(arr: np.ndarray) -> np.ndarray:
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def _npy_shape(path: str) -> Tuple[int, ...]:
    # header only, no data read (np.load with mmap_mode would map the file)
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(int(s) for s in shape)


class VolumeSet:
    """Volumes (X, Y, Z) normalised to float32 [0, 1], read lazily, one held at a time.

    Args:
        sources: paths (volume files, DICOM series folders, ``.npy`` arrays) or (X, Y, Z) arrays.
        options: intensity and foreground settings (:class:`ExtractionOptions`; ``modality``, windows,
            ``check_range`` are used here).
        is_normalized: the volumes are already in [0, 1] (the reference's ``--is_normalized``); only
            clipped, not windowed. Values outside [-0.001, 1.001] make the volume unreadable (skipped).
        name: "training" / "validation" (for messages).
        shapes: known (X, Y, Z) per source (skips header reads).

    Attributes:
        skipped: ``[{"path", "reason"}]`` of volumes found unreadable so far (by :meth:`scan_resized`).
        readable: indices read successfully by :meth:`scan_resized` (None before a scan).
    """

    def __init__(self, sources: Sequence[Source], options: Optional[ExtractionOptions] = None,
                 is_normalized: bool = False, name: str = "training",
                 shapes: Optional[Sequence[Sequence[int]]] = None) -> None:
        self.sources: List[Source] = list(sources)
        self.options = options if options is not None else ExtractionOptions()
        self.is_normalized = bool(is_normalized)
        self.name = name
        self._shapes: List[Optional[Tuple[int, int, int]]] = (
            [tuple(int(v) for v in s) for s in shapes] if shapes is not None else [None] * len(self.sources))
        if len(self._shapes) != len(self.sources):
            raise ValueError(f"{len(self._shapes)} shapes for {len(self.sources)} volumes")
        self.skipped: List[Dict[str, str]] = []
        self.readable: Optional[List[int]] = None
        self._cache: Tuple[int, Optional[np.ndarray]] = (-1, None)
        self._raw: Tuple[int, Any] = (-1, None)  # (index, (raw array or memmap, window)) of the last gather

    def __len__(self) -> int:
        return len(self.sources)

    def label(self, i: int) -> str:
        """The path of volume ``i`` (``<array i>`` for in-memory arrays)."""
        s = self.sources[i]
        return s if isinstance(s, str) else f"<{self.name} array {i}>"

    @property
    def labels(self) -> List[str]:
        return [self.label(i) for i in range(len(self))]

    # ------------------------------------------------------------------------------------------ #
    def _read_raw(self, i: int) -> np.ndarray:
        src = self.sources[i]
        if not isinstance(src, str):
            arr = np.asarray(src.detach().cpu().numpy() if hasattr(src, "detach") else src)
        elif src.endswith(".npy") and os.path.isfile(src):
            try:
                arr = np.load(src, mmap_mode="r", allow_pickle=False)
            except Exception as err:  # truncated / not an npy / pickled object arrays
                raise VolumeReadError(f"{src}: not a readable .npy array ({type(err).__name__}: {err})") from err
        else:
            arr, _ = read_volume(src, spacing=self.options.spacing, dicom_reader=self.options.dicom_reader)
        arr = _drop_trailing_singletons(np.asarray(arr))
        if arr.ndim != 3:
            raise VolumeReadError(f"{self.label(i)}: expected a 3D volume (X, Y, Z), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise VolumeReadError(f"{self.label(i)}: expected real numbers, got dtype {arr.dtype}")
        return arr

    def _normalise(self, i: int, arr: np.ndarray) -> np.ndarray:
        o = self.options
        if self.is_normalized:
            vol = np.asarray(arr, dtype=np.float32)
            lo, hi = float(np.min(vol)), float(np.max(vol))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise VolumeReadError(f"{self.label(i)}: contains NaN or infinite values")
            if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
                raise VolumeReadError(f"{self.label(i)}: is_normalized but values lie in [{lo:g}, {hi:g}], "
                                      "not [0, 1]; drop is_normalized to apply the intensity window")
            return np.clip(vol, 0.0, 1.0)
        if o.check_range:
            problem = intensity_problem(np.asarray(arr), o)
            if problem:
                raise VolumeReadError(f"{self.label(i)}: {problem}")
        try:
            lo, hi = intensity_window(arr, o.preset, hu_window=o.hu_window, mri_window=o.mri_window, window=o.window)
        except ValueError as err:
            raise VolumeReadError(f"{self.label(i)}: {err}") from err
        return normalise_intensity(arr, lo, hi)

    def load(self, i: int) -> np.ndarray:
        """Volume ``i`` normalised: float32 (X, Y, Z) in [0, 1] (the last one read is kept for a repeat call).

        Raises VolumeReadError / MissingReaderError naming the file.
        """
        i = int(i)
        if self._cache[0] == i:
            return self._cache[1]
        self._cache = (-1, None)  # release the previous one before reading the next
        vol = self._normalise(i, self._read_raw(i))
        self._shapes[i] = tuple(int(s) for s in vol.shape)
        self._cache = (i, vol)
        return vol

    @property
    def reads_windows(self) -> bool:
        """Whether :meth:`gather` reads only the windows of every volume (``.npy`` files and arrays under a fixed
        window), so that cutting crops class by class costs no whole-volume reads."""
        fixed = self.is_normalized or self.options.preset != "mri_minmax" or self.options.window is not None
        return fixed and all(not isinstance(s, str) or s.endswith(".npy") for s in self.sources)

    def _lazy(self, i: int) -> Optional[Tuple[np.ndarray, Optional[Tuple[float, float]]]]:
        """(raw array, window or None when is_normalized) when crops of volume ``i`` can be normalised on their
        own: ``.npy`` files (memory-mapped) and in-memory arrays under a fixed window; else None."""
        src = self.sources[i]
        if isinstance(src, str) and not src.endswith(".npy"):
            return None  # NIfTI / DICOM ...: read whole (MONAI's readers)
        o = self.options
        if not self.is_normalized and o.preset == "mri_minmax" and o.window is None:
            return None  # the window needs the whole volume's min..max
        if self._raw[0] != i:
            raw = self._read_raw(i)
            window = None if self.is_normalized else intensity_window(
                raw, o.preset, hu_window=o.hu_window, mri_window=o.mri_window, window=o.window)
            self._raw = (i, (raw, window))
            self._shapes[i] = tuple(int(s) for s in raw.shape)  # type: ignore[assignment]
        return self._raw[1]

    def gather(self, i: int, corners: np.ndarray, size: Sequence[int]) -> np.ndarray:
        """Normalised windows of volume ``i``: float32 (n, *size) in [0, 1] at ``corners`` (n, 3) (inside the volume).

        Equal to slicing :meth:`load`'s volume (normalisation is per voxel), but for ``.npy`` files and arrays
        under a fixed window only the windows are read (memory-mapped) and normalised, not the whole volume:
        cutting a few crops out of a 512x512x300 CT then touches megabytes instead of its 300 MB. No range
        checks here: those ran when the volume was first read (:meth:`scan_resized`).
        """
        corners = np.asarray(corners, dtype=np.int64).reshape(-1, 3)
        size = tuple(int(s) for s in size)
        lazy = self._lazy(int(i))
        if lazy is None:
            vol = self.load(int(i))
            return np.array(sliding_window_view(vol, size)[corners[:, 0], corners[:, 1], corners[:, 2]])
        raw, window = lazy
        crops = sliding_window_view(raw, size)[corners[:, 0], corners[:, 1], corners[:, 2]]
        if window is None:
            return np.clip(np.asarray(crops, dtype=np.float32), 0.0, 1.0)
        return normalise_intensity(crops, *window)

    def shape(self, i: int) -> Tuple[int, int, int]:
        """(X, Y, Z) of volume ``i`` (from the header of ``.npy`` files without reading the data)."""
        if self._shapes[i] is None:
            src = self.sources[i]
            if isinstance(src, str) and src.endswith(".npy") and os.path.isfile(src):
                try:
                    shape = _npy_shape(src)
                except Exception:  # not a valid header: load() below raises the error naming the file
                    shape = ()
                while len(shape) > 3 and shape[-1] == 1:
                    shape = shape[:-1]
                if len(shape) == 3:
                    self._shapes[i] = shape  # type: ignore[assignment]
                    return self._shapes[i]  # type: ignore[return-value]
            self.load(i)
        return self._shapes[i]  # type: ignore[return-value]

    @property
    def shapes(self) -> List[Tuple[int, int, int]]:
        """(X, Y, Z) of every volume (reads headers / volumes not seen yet)."""
        return [self.shape(i) for i in range(len(self))]

    def subset(self, indices: Sequence[int]) -> "VolumeSet":
        """A VolumeSet of the volumes ``indices`` (their known shapes carried over)."""
        out = VolumeSet([self.sources[i] for i in indices], self.options, self.is_normalized, self.name)
        out._shapes = [self._shapes[i] for i in indices]
        return out

    def scan_resized(self, shape: Sequence[int], device: Union[str, torch.device] = "cpu",
                     mode: str = "trilinear", progress: Any = None) -> Iterator[Tuple[int, torch.Tensor]]:
        """Read every volume once, yielding ``(index, tensor (1, 1, *shape) float32 in [0, 1])``.

        Unreadable volumes are skipped with one WARNING line (file and reason) and recorded in
        :attr:`skipped`; :attr:`readable` lists the others once the scan is complete.
        ``progress``: an optional callable ``(n) -> None`` called after each volume.
        """
        readable: List[int] = []
        self.skipped = []
        for i in range(len(self)):
            try:
                vol = self.load(i)
            except (VolumeReadError, MissingReaderError) as err:
                reason = one_line(str(err), self.label(i))
                logger.warning("self-discovery: skipping %s volume %s: %s", self.name, self.label(i), reason)
                self.skipped.append({"path": self.label(i), "reason": reason})
            else:
                readable.append(i)
                yield i, resize_volumes([vol], shape, device=device, mode=mode)
            finally:
                if progress is not None:
                    progress(1)
        self._cache = (-1, None)
        self._raw = (-1, None)
        self.readable = readable


def resize_volumes(volumes: Union[torch.Tensor, np.ndarray, Sequence[np.ndarray]], shape: Sequence[int],
                   device: Union[str, torch.device] = "cpu", mode: str = "trilinear") -> torch.Tensor:
    """Volumes resized to ``shape``: float32 tensor (N, 1, *shape), values kept in [0, 1].

    Args:
        volumes: a tensor / array (N, 1, X, Y, Z) or (N, X, Y, Z), or a list of (X, Y, Z) arrays of any
            sizes (volumes of equal size are resized in one batched call).
        shape: target (X, Y, Z), e.g. the reference's 128x128x64.
        device: where the interpolation runs (the feature network's device).
        mode: ``"trilinear"`` (default; the reference used skimage's linear ``resize``) or ``"area"``
            (block averaging: less aliasing when shrinking a 512x512 CT four times).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive sizes (X, Y, Z), got {shape}")
    kw = {"align_corners": False} if mode in ("trilinear", "linear") else {}

    def run(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(device=device, dtype=torch.float32)
        if tuple(batch.shape[2:]) == shape:
            return batch
        return F.interpolate(batch, size=shape, mode=mode, **kw).clamp_(0.0, 1.0)

    if isinstance(volumes, (torch.Tensor, np.ndarray)) and np.ndim(volumes) in (4, 5):
        t = torch.as_tensor(np.asarray(volumes) if isinstance(volumes, np.ndarray) else volumes)
        return run(t if t.ndim == 5 else t[:, None])
    arrays = [np.asarray(v) for v in volumes]
    if not arrays:
        return torch.zeros((0, 1) + shape, dtype=torch.float32, device=device)
    out: List[Optional[torch.Tensor]] = [None] * len(arrays)
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for i, a in enumerate(arrays):
        if a.ndim != 3:
            raise ValueError(f"volume {i}: expected (X, Y, Z), got shape {a.shape}")
        groups.setdefault(a.shape, []).append(i)
    for idx in groups.values():
        res = run(torch.from_numpy(np.stack([np.asarray(arrays[i], dtype=np.float32) for i in idx]))[:, None])
        for k, i in enumerate(idx):
            out[i] = res[k:k + 1]
    return torch.cat(out, dim=0)  # type: ignore[arg-type]
