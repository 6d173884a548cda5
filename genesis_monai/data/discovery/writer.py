"""Write one chunk of pattern files (the reference layout of :mod:`genesis_monai.data.pattern_files`) row by row.

A reference chunk holds 50 classes x 200 instances = 10,000 cubes of 64x64x32 per resolution (5 GB
in float32, 10 GB in the reference's float64), too much to assemble in memory the way
:func:`~genesis_monai.data.pattern_files.write_pattern_files` takes it. :class:`ChunkWriter` fills the
rows either as they come in file order (streamed straight to the files) or in any order (the crops cut
volume by volume), in memory for a small chunk and in memory-mapped ``.npy`` files under temporary names
for a large one, and puts the files under their final names only once complete, like the package's atomic writer
(:func:`genesis_monai.io_utils.atomic_write`): an interrupted run leaves no half-written chunk.
Names, shapes and the label format ((n, 1) float64) are those of ``write_pattern_files``, so
:func:`~genesis_monai.data.pattern_files.find_pattern_files` and
:class:`~genesis_monai.data.pattern_files.PatternDataset` read the result.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from genesis_monai.data.pattern_files import pattern_file_name
from genesis_monai.io_utils import (PARTIAL_SUFFIX, atomic_write, atomic_write_bytes, atomic_write_json,
                                    default_file_mode)

__all__ = ["ChunkWriter", "chunk_file_names", "chunk_is_complete", "DTYPES", "DATALIST_FILE",
           "write_discovery_datalist", "read_discovery_datalist"]

#: the datalist a bundle reads: ``{"training": [...], "validation": [...], "n_classes", ...}``
DATALIST_FILE = "datalist.json"

#: data dtypes offered: float32 (default, half the disk) or float64 (the reference's bytes)
DTYPES = ("float32", "float64")
#: chunks up to this many bytes are assembled in memory, larger ones in memory-mapped files
DEFAULT_MEMORY_LIMIT = 1 << 30


def chunk_file_names(part: int, resolutions: Sequence[int]) -> List[Tuple[str, str, int]]:
    """``[(split, kind, resolution)]`` of the files one chunk consists of (train data/label per resolution,
    then validation resolution 1)."""
    out = [("train", kind, int(r)) for r in resolutions for kind in ("data", "label")]
    return out + [("val", "data", 1), ("val", "label", 1)]


def chunk_is_complete(folder: str, part: int, resolutions: Sequence[int], n_train: int, n_val: int) -> bool:
    """Whether every file of chunk ``part`` exists with the expected number of rows (headers read only)."""
    for split, kind, res in chunk_file_names(part, resolutions):
        path = os.path.join(folder, pattern_file_name(split, kind, res, part))
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
        except (OSError, ValueError):
            return False
        if rows != (n_train if split == "train" else n_val):
            return False
    return True


class _Aborted(Exception):
    """Thrown into an atomic writer to discard its temporary file."""


class _NpyAppender:
    """A ``.npy`` file of known shape written row block by row block, atomically (nothing in memory)."""

    def __init__(self, path: str, shape: Tuple[int, ...], dtype: str) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype).newbyteorder("<")
        self.n = 0
        self._writer = atomic_write(path, "wb")
        self._f = self._writer.__enter__()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self._f, header)
        self._open = True

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.n + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {rows.shape} do not fit {self.shape} after {self.n} rows")
        self._f.write(rows.data)
        self.n += len(rows)

    def commit(self) -> None:
        if self.n != self.shape[0]:
            raise ValueError(f"{self.path}: {self.n} of {self.shape[0]} rows written")
        self._open = False
        self._writer.__exit__(None, None, None)

    def abort(self) -> None:
        if self._open:
            self._open = False
            try:
                self._writer.__exit__(_Aborted, _Aborted(), None)
            except _Aborted:
                pass


class ChunkWriter:
    """The data files of one chunk, committed atomically, in one of three modes.

    * ``stream=True``: rows arrive in file order (:meth:`append`) and go straight to the files: nothing
      is assembled (the fastest; :func:`~genesis_monai.data.discovery.patterns.generate_patterns` uses
      it when the crops can be cut class by class cheaply, i.e. from memory-mapped ``.npy`` volumes);
    * else the rows are filled in any order into :attr:`train` / :attr:`val` (the crops cut volume by
      volume): in memory when the chunk fits ``memory_limit`` bytes, written sequentially at
      :meth:`commit`; otherwise in memory-mapped files under temporary names (the reference's 50 x 200
      x 64x64x32 cubes are 5 GB per resolution).

    Args:
        folder: output folder.
        part: chunk number k (files ``..._fold{k}.0.npy``).
        n_train / n_val: rows of the training / validation files.
        crop: cube shape (X, Y, Z).
        resolutions: training resolutions written (1, or 1, 2, 3 with multi-resolution).
        dtype: "float32" or "float64".
        memory_limit: most bytes assembled in memory (default 1 GiB).
        stream: the streaming mode.

    Attributes:
        train: ``{resolution: array (n_train, X, Y, Z)}``; ``val``: array (n_val, X, Y, Z) (every row must be
        written before :meth:`commit`; empty in streaming mode); ``mode``: "stream", "memory" or "memmap".
    """

    def __init__(self, folder: str, part: int, n_train: int, n_val: int, crop: Sequence[int],
                 resolutions: Sequence[int] = (1,), dtype: str = "float32",
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, stream: bool = False) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.folder, self.part = str(folder), int(part)
        self.resolutions = tuple(int(r) for r in resolutions)
        crop = tuple(int(c) for c in crop)
        total = (len(self.resolutions) * int(n_train) + int(n_val)) * int(np.prod(crop)) * np.dtype(dtype).itemsize
        self.mode = "stream" if stream else "memory" if total <= int(memory_limit) else "memmap"
        os.makedirs(self.folder, exist_ok=True)
        self._tmp: Dict[Tuple[str, int], str] = {}
        self._streams: Dict[Tuple[str, int], _NpyAppender] = {}
        self.train: Dict[int, np.ndarray] = {}
        self.val: Any = None
        keys = [(("train", r), (int(n_train),) + crop) for r in self.resolutions] + [(("val", 1), (int(n_val),) + crop)]
        try:
            for key, shape in keys:
                if self.mode == "stream":
                    self._streams[key] = _NpyAppender(self._final(key), shape, dtype)
                elif key[0] == "train":
                    self.train[key[1]] = self._open(key, shape, dtype)
                else:
                    self.val = self._open(key, shape, dtype)
        except BaseException:
            self.abort()
            raise

    def _final(self, key: Tuple[str, int], kind: str = "data") -> str:
        return os.path.join(self.folder, pattern_file_name(key[0], kind, key[1], self.part))

    def _open(self, key: Tuple[str, int], shape: Tuple[int, ...], dtype: str) -> np.ndarray:
        if self.mode == "memory":
            return np.empty(shape, dtype=dtype)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self._final(key))}.", suffix=PARTIAL_SUFFIX,
                                   dir=self.folder)
        os.close(fd)
        self._tmp[key] = tmp
        return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)

    def append(self, split: str, resolution: int, rows: np.ndarray) -> None:
        """Streaming mode: append ``rows`` (n, X, Y, Z) to the ``split`` ("train" / "val") file of ``resolution``."""
        if self.mode != "stream":
            raise RuntimeError("append() needs ChunkWriter(..., stream=True)")
        self._streams[(split, int(resolution))].append(rows)

    def commit(self, train_labels: np.ndarray, val_labels: np.ndarray) -> Dict[str, str]:
        """Finish the data files under their final names, then write the label files ((n, 1) float64).

        Returns ``{file name: path}``. Labels go last: a chunk whose label files exist is whole.
        """
        paths: Dict[str, str] = {}
        for key, stream in list(self._streams.items()):
            stream.commit()
            paths[os.path.basename(stream.path)] = stream.path
        self._streams = {}
        arrays = [(("train", r), a) for r, a in self.train.items()] + (
            [(("val", 1), self.val)] if self.val is not None else [])
        self.train, self.val = {}, None
        for key, arr in arrays:
            final = self._final(key)
            if self.mode == "memory":
                with atomic_write(final, "wb") as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
            else:
                arr.flush()
                with open(self._tmp[key], "rb+") as f:
                    os.fsync(f.fileno())
            paths[os.path.basename(final)] = final
        del arrays  # close the maps before renaming (needed on Windows)
        for key, tmp in list(self._tmp.items()):
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, self._final(key))
            del self._tmp[key]
        for split, labels in (("train", train_labels), ("val", val_labels)):
            for r in (self.resolutions if split == "train" else (1,)):
                final = self._final((split, r), "label")
                atomic_write_bytes(final, _npy_bytes(np.asarray(labels, dtype=np.float64).reshape(-1, 1)))
                paths[os.path.basename(final)] = final
        return paths

    def abort(self) -> None:
        """Drop everything not committed (nothing under a final name is created or changed)."""
        for stream in self._streams.values():
            stream.abort()
        self._streams = {}
        self.train, self.val = {}, None
        for tmp in self._tmp.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        self._tmp = {}

    def __enter__(self) -> "ChunkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # after commit() nothing is left to remove


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_discovery_datalist(folder: str, parts: Sequence[int], resolutions: Sequence[int],
                             info: Mapping[str, Any]) -> str:
    """Write ``datalist.json`` in ``folder``: the chunk files of ``parts``, paths relative to ``folder``.

    ``{"description", "training": [{"image", "label", "resolution", "part"}] (chunk, then resolution),
    "validation": [... resolution 1], **info}`` (``info``: n_classes, n_instances, crop, ...). The records
    are those :func:`~genesis_monai.data.pattern_files.find_pattern_files` gives, so a bundle can pass a
    split to :class:`~genesis_monai.data.pattern_files.PatternDataset` after
    :func:`read_discovery_datalist` (or MONAI's ``load_decathlon_datalist``) made the paths absolute.
    """
    out: Dict[str, Any] = {"description": "Semantic Genesis / TransVW self-discovery patterns "
                           "(genesis_monai.data.discovery); paths relative to this file",
                           "training": [], "validation": []}
    for part in parts:
        for split, res_list in (("train", resolutions), ("val", (1,))):
            for r in res_list:
                out["training" if split == "train" else "validation"].append({
                    "image": pattern_file_name(split, "data", r, part),
                    "label": pattern_file_name(split, "label", r, part),
                    "resolution": int(r), "part": int(part)})
    out.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in info.items()})
    return atomic_write_json(os.path.join(folder, DATALIST_FILE), out)


def read_discovery_datalist(path: str) -> Dict[str, Any]:
    """``datalist.json`` (a file, or the folder holding it) with the "image" / "label" paths made absolute."""
    if os.path.isdir(path):
        path = os.path.join(path, DATALIST_FILE)
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    for split in ("training", "validation"):
        for r in content.get(split, []):
            for key in ("image", "label"):
                if not os.path.isabs(r[key]):
                    r[key] = os.path.join(base, r[key])
    return content
