"""Where the bundles live: the repository's ``bundles/`` folder, or ``$GENESIS_MONAI_BUNDLES``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

__all__ = ["bundles_root", "bundle_path", "available_bundles"]


def bundles_root() -> Path:
    """``$GENESIS_MONAI_BUNDLES`` if set, else ``bundles/`` beside the package (an editable install or a clone)."""
    env = os.environ.get("GENESIS_MONAI_BUNDLES")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / "bundles"
    if not root.is_dir():
        raise FileNotFoundError(
            f"bundle folder {root} not found: install genesis_monai from a clone (pip install -e .) or set "
            "GENESIS_MONAI_BUNDLES to the folder that holds the bundles"
        )
    return root


def available_bundles() -> List[str]:
    """Names of the folders in :func:`bundles_root` that hold ``configs/metadata.json``."""
    root = bundles_root()
    return sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())


def bundle_path(name: str) -> Path:
    """Folder of bundle ``name`` (e.g. ``"models_genesis"``); error naming the known bundles otherwise."""
    path = bundles_root() / name
    if not (path / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"no bundle {name!r} in {bundles_root()}; available: {available_bundles()}")
    return path
