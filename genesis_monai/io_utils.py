"""The package's one atomic file writer, and thin helpers on top of it.

Every file the package writes that a user may rely on (checkpoints, datalists, settings, NIfTI
volumes, pictures) goes through :func:`atomic_write`: the content is written to a temporary file
in the destination folder and renamed over the destination only once complete, so an interrupted
run never leaves a half-written file and an existing file is replaced only by a whole new one.
The new file gets the permissions a plain ``open()`` would give (``0o666`` minus the umask), not
the ``0o600`` of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["jsonable", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_torch_save", "default_file_mode",
           "PARTIAL_SUFFIX"]

#: suffix of the temporary files :func:`atomic_write` creates (left only by a killed process)
PARTIAL_SUFFIX = ".partial"


def default_file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give a new file: ``0o666`` minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` (default) or ``"w"`` (text, UTF-8). On an exception inside the ``with``
    block the temporary file is removed and ``path`` is left as it was. Parent folders are created.

    Example::

        with atomic_write("out/settings.json", "w") as f:
            json.dump(settings, f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: expected a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns ``str(path)``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return str(path)


def atomic_write_json(path: PathLike, content: Any, indent: int = 2) -> str:
    """Write ``content`` as JSON (with a final newline) to ``path`` atomically; returns ``str(path)``."""
    with atomic_write(path, "w") as f:
        json.dump(content, f, indent=indent)
        f.write("\n")
    return str(path)


def atomic_torch_save(obj: Any, path: PathLike) -> str:
    """``torch.save(obj)`` to ``path`` atomically; returns ``str(path)``."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return str(path)


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, mapping keys as str and NumPy/torch scalars as Python numbers, recursively,
    so that settings written to JSON compare equal after a reload."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
