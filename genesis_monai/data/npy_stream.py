"""Write a ``.npy`` file of float32 cubes (n, X, Y, Z) piece by piece, atomically.

A LUNA16 fold holds thousands of 64x64x32 cubes (gigabytes): :class:`NpyStreamWriter` appends
them as they are extracted instead of holding the fold in memory, and the file appears under its
final name only once complete (through :func:`genesis_monai.io_utils.atomic_write`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from genesis_monai.io_utils import atomic_write

__all__ = ["NpyStreamWriter", "npy_header"]


def npy_header(shape: Tuple[int, ...], length: Optional[int] = None) -> bytes:
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


class _Aborted(Exception):
    """Thrown into the atomic writer to discard the temporary file."""


class NpyStreamWriter:
    """Append float32 cubes (k, X, Y, Z) to ``path`` without holding a whole fold in memory.

    Data go to the temporary file of :func:`~genesis_monai.io_utils.atomic_write` (held open);
    :meth:`commit` writes the final ``.npy`` header (its length was reserved up front) and lets the
    writer move the file into place. :meth:`abort` (or an exception inside ``with``) removes it.
    """

    def __init__(self, path: str, cube_shape: Sequence[int]) -> None:
        self.path = str(path)
        self.cube_shape = tuple(int(s) for s in cube_shape)
        self.n = 0
        self._writer = atomic_write(self.path, "wb")
        self._f = self._writer.__enter__()
        # reserve room for the largest count we could ever write, so the header never grows
        self._header_len = len(npy_header((10**15,) + self.cube_shape))
        self._f.write(self._header(0))
        self._open = True

    def _header(self, n: int) -> bytes:
        return npy_header((int(n),) + self.cube_shape, self._header_len)

    def append(self, cubes: np.ndarray) -> None:
        """Append ``cubes`` (k, X, Y, Z) (converted to little-endian float32)."""
        cubes = np.ascontiguousarray(cubes, dtype="<f4")
        if cubes.ndim != 4 or tuple(cubes.shape[1:]) != self.cube_shape:
            raise ValueError(f"expected cubes (k, {', '.join(map(str, self.cube_shape))}), got {cubes.shape}")
        self._f.write(cubes.tobytes())
        self.n += int(cubes.shape[0])

    def commit(self) -> str:
        """Finish the file (header with the final count) and move it into place; returns its path."""
        self._f.seek(0)
        self._f.write(self._header(self.n))
        self._open = False
        self._writer.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Discard what was written (no file at ``path`` is created or changed)."""
        if self._open:
            self._open = False
            self._writer.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> "NpyStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # after commit() a no-op; otherwise (exception or no commit) nothing is kept
