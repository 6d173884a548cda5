"""Small file helpers shared by the package: atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]


def atomic_torch_save(obj: Any, path: PathLike) -> str:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    An interrupted save never leaves a half-written file at ``path``; an existing file there is
    replaced only once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(path)
