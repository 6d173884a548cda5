"""Datasets over pretraining cube files: ``bat_{scale}_s_{X}x{Y}x{Z}_{fold}.npy`` arrays (n, X, Y, Z) in [0, 1].

* :func:`load_cube_datalist` reads ``cubes_datalist.json`` (written by ``extract-cubes``) with
  MONAI's ``load_decathlon_datalist`` and returns records with absolute paths;
* :func:`find_cube_files` lists reference-named cube files in a folder without a JSON and splits
  them by fold number as the reference does (0-4 training, 5-6 validation, 7-9 test);
* :class:`CubeDataset` indexes every cube of every file, memory-mapping the files so that a
  multi-gigabyte LUNA16 fold is never loaded at once.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import warnings
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from genesis_monai.data.folds import REFERENCE_SPLITS  # noqa: F401 (also importable from here)

logger = logging.getLogger(__name__)

__all__ = [
    "CUBE_FILE_RE",
    "REFERENCE_SPLITS",
    "cube_file_name",
    "parse_cube_file_name",
    "split_of_fold",
    "load_cube_datalist",
    "find_cube_files",
    "CubeDataset",
]

#: ``bat_{scale}_s_{X}x{Y}x{Z}_{fold}.npy`` (training scripts) or without ``_s`` (the upstream generator)
CUBE_FILE_RE = re.compile(r"^bat_(?P<scale>\d+)(?P<s>_s)?_(?P<x>\d+)x(?P<y>\d+)x(?P<z>\d+)_(?P<fold>\d+)\.npy$")


def cube_file_name(scale: int, shape: Sequence[int], fold: int) -> str:
    """The reference name read by the training scripts: ``bat_32_s_64x64x32_0.npy``."""
    return "bat_{}_s_{}x{}x{}_{}.npy".format(int(scale), *(int(s) for s in shape), int(fold))


def parse_cube_file_name(name: str) -> Optional[Dict[str, object]]:
    """``{"scale", "shape", "fold", "with_s"}`` for a reference cube file name, else None."""
    m = CUBE_FILE_RE.match(os.path.basename(name))
    if m is None:
        return None
    return {"scale": int(m["scale"]), "shape": (int(m["x"]), int(m["y"]), int(m["z"])), "fold": int(m["fold"]),
            "with_s": m["s"] is not None}


def split_of_fold(fold: int, splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS) -> Optional[str]:
    """The split of ``fold``; folds beyond the listed ones use ``fold % 10`` (subset10 -> like subset0)."""
    for candidate in (int(fold), int(fold) % 10):
        for split, folds in splits.items():
            if candidate in tuple(int(f) for f in folds):
                return split
    return None


def load_cube_datalist(datalist_json: str, split: str = "training") -> List[dict]:
    """Records ``{"image": absolute path, "fold": k, "n_cubes": n}`` of ``split`` in a cube datalist JSON.

    Paths in the JSON are relative to the JSON's folder (MONAI's ``load_decathlon_datalist``
    resolves them). A split missing from the JSON gives an empty list; a listed file that does not
    exist raises FileNotFoundError naming the JSON and the file.
    """
    import json

    from monai.data import load_decathlon_datalist

    datalist_json = os.path.abspath(os.path.expanduser(str(datalist_json)))
    if not os.path.isfile(datalist_json):
        raise FileNotFoundError(f"cube datalist {datalist_json} not found (write one with "
                                "`python -m genesis_monai extract-cubes --data DIR --save DIR`)")
    try:
        with open(datalist_json) as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{datalist_json} is not valid JSON: {err}") from err
    if not isinstance(content, dict):
        raise ValueError(f"{datalist_json}: expected a JSON object with 'training'/'validation' lists")
    if split not in content:
        return []
    if not isinstance(content[split], list):
        raise ValueError(f"{datalist_json}: {split!r} must be a list, got {type(content[split]).__name__}")
    items = load_decathlon_datalist(datalist_json, is_segmentation=True, data_list_key=split,
                                    base_dir=os.path.dirname(datalist_json))
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError(f"{datalist_json}: {split}[{i}] must be a dict with an 'image' path, got {item!r}")
        if not os.path.isfile(item["image"]):
            raise FileNotFoundError(f"{datalist_json}: {split}[{i}] points to a missing file {item['image']}")
    return items


def find_cube_files(folder: str, scale: Optional[int] = None, shape: Optional[Sequence[int]] = None,
                    splits: Mapping[str, Sequence[int]] = REFERENCE_SPLITS) -> Dict[str, List[dict]]:
    """Reference-named cube files in ``folder`` (not recursive), split by fold number.

    Returns ``{"training": [...], "validation": [...], "test": [...]}`` of records
    ``{"image": absolute path, "fold": k}`` sorted by fold. Both names are accepted
    (``bat_32_s_64x64x32_0.npy`` and the generator's ``bat_32_64x64x32_0.npy``); when both exist for
    one fold the ``_s_`` file is used. ``scale`` / ``shape`` select one cube set; a folder holding
    several sets (different scales or shapes) without a selection raises ValueError listing them.
    """
    folder = os.path.abspath(os.path.expanduser(str(folder)))
    out: Dict[str, List[dict]] = {split: [] for split in splits}
    if not os.path.isdir(folder):
        return out
    chosen: Dict[Tuple[int, Tuple[int, ...], int], Tuple[bool, str]] = {}
    for name in sorted(os.listdir(folder)):
        info = parse_cube_file_name(name)
        if info is None:
            continue
        if scale is not None and info["scale"] != int(scale):
            continue
        if shape is not None and info["shape"] != tuple(int(s) for s in shape):
            continue
        key = (info["scale"], info["shape"], info["fold"])
        if key not in chosen or (info["with_s"] and not chosen[key][0]):
            chosen[key] = (bool(info["with_s"]), os.path.join(folder, name))
    sets = sorted({(k[0], k[1]) for k in chosen})
    if len(sets) > 1:
        names = ", ".join(f"scale {s} shape {'x'.join(map(str, sh))}" for s, sh in sets)
        raise ValueError(f"{folder} holds several cube sets ({names}): pass scale=/shape= to choose one")
    for (_, _, fold), (_, path) in sorted(chosen.items(), key=lambda kv: kv[0][2]):
        split = split_of_fold(fold, splits)
        if split is None:
            logger.warning("%s: fold %d belongs to no split %s; ignored", path, fold, dict(splits))
            continue
        out.setdefault(split, []).append({"image": path, "fold": fold})
    return out


def _path_of(item: Union[str, Mapping]) -> str:
    if isinstance(item, Mapping):
        if "image" not in item:
            raise ValueError(f"CubeDataset record {dict(item)!r} has no 'image' path")
        return str(item["image"])
    return str(item)


class CubeDataset(Dataset):
    """Every cube of every cube file, as ``{"image": float32 tensor (1, X, Y, Z)}`` (values in [0, 1]).

    Args:
        data: records ``{"image": path, ...}`` or paths of ``.npy`` files holding (n, X, Y, Z) cube
            arrays or one (X, Y, Z) cube; float files of any precision (the reference wrote float64).
        transform: callable applied to the ``{"image": ...}`` dict (e.g. MONAI dictionary transforms).
        check_range: raise when a returned cube has values outside [0, 1] beyond ``tolerance``
            (checked per cube when it is read, so a big file is never scanned up front).
        tolerance: allowed excursion outside [0, 1].

    Files are opened with ``np.load(mmap_mode="r")`` in the process that reads them (workers
    included), so only the cubes asked for are paged in. Raises ValueError naming the file for a
    wrong number of dimensions or a non-numeric dtype; warns when a cube side is not divisible by 8
    (the Genesis UNet3D pools three times) or when files hold different cube shapes.
    """

    def __init__(self, data: Sequence[Union[dict, str]], transform: Optional[Callable] = None,
                 check_range: bool = True, tolerance: float = 1e-3) -> None:
        if isinstance(data, (str, os.PathLike, Mapping)):
            data = [data]  # one file given on its own
        self.paths: List[str] = [os.path.abspath(os.path.expanduser(_path_of(d))) for d in data]
        if not self.paths:
            raise ValueError("CubeDataset got no cube files (an empty datalist split?)")
        self.transform = transform
        self.check_range = bool(check_range)
        self.tolerance = float(tolerance)
        self._single: List[bool] = []
        counts: List[int] = []
        shapes = {}
        for path in self.paths:
            arr = self._open_checked(path)
            single = arr.ndim == 3
            self._single.append(single)
            counts.append(1 if single else int(arr.shape[0]))
            if self.check_range and counts[-1]:
                self._check_cube(np.asarray(arr if single else arr[0], dtype=np.float32), path, 0)  # fail early
            cube_shape = tuple(int(s) for s in (arr.shape if single else arr.shape[1:]))
            shapes.setdefault(cube_shape, path)
            if counts[-1] and any(s % 8 for s in cube_shape):
                warnings.warn(f"{path}: cube shape {cube_shape} is not divisible by 8; the Genesis UNet3D "
                              "needs sides divisible by 8", stacklevel=2)
        if len(shapes) > 1:
            warnings.warn("cube files hold different cube shapes: "
                          + "; ".join(f"{s} in {p}" for s, p in shapes.items())
                          + " (batches need equal shapes unless the transform crops/resizes)", stacklevel=2)
        self._ends = np.cumsum(counts).tolist()
        if not self._ends or self._ends[-1] == 0:
            raise ValueError(f"CubeDataset: the files hold no cubes ({', '.join(self.paths[:3])}"
                             f"{' ...' if len(self.paths) > 3 else ''})")
        self._arrays: Dict[int, np.ndarray] = {}

    @staticmethod
    def _open(path: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cube file {path} not found")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as err:  # bad magic, truncated file, pickled object arrays
            raise ValueError(f"{path} is not a readable .npy cube array: {type(err).__name__}: {err}") from err

    def _open_checked(self, path: str) -> np.ndarray:
        arr = self._open(path)
        if arr.ndim not in (3, 4):
            raise ValueError(f"{path}: expected cubes (n, X, Y, Z) or one cube (X, Y, Z), got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{path}: expected a numeric cube array, got dtype {arr.dtype}")
        return arr

    def _check_cube(self, cube: np.ndarray, path: str, j: int) -> None:
        if not cube.size:
            return
        lo, hi = float(cube.min()), float(cube.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -self.tolerance or hi > 1.0 + self.tolerance:
            raise ValueError(f"{path}: cube {j} has values in [{lo:.4g}, {hi:.4g}], expected [0, 1] "
                             "(cubes must be normalised; see extract-cubes --modality)")

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getstate__(self):  # memory maps are not pickled into DataLoader workers: reopened there
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def _locate(self, index: int) -> Tuple[int, int]:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"cube index {index} out of range for {n} cubes")
        f = bisect.bisect_right(self._ends, index)
        return f, index - (self._ends[f - 1] if f else 0)

    def locate(self, index: int) -> Tuple[str, int]:
        """(file path, index within that file) of cube ``index``."""
        f, j = self._locate(index)
        return self.paths[f], j

    def __getitem__(self, index: int) -> dict:
        f, j = self._locate(index)
        path = self.paths[f]
        arr = self._arrays.get(f)
        if arr is None:
            arr = self._arrays[f] = self._open(path)
        cube = np.array(arr if self._single[f] else arr[j], dtype=np.float32)  # copy out of the memory map
        if self.check_range:
            self._check_cube(cube, path, j)
        item = {"image": convert_to_tensor(cube[None], track_meta=False)}  # a plain tensor, no copy
        return self.transform(item) if self.transform is not None else item
