"""Finding checkpoints to resume from."""

from __future__ import annotations

import glob
import os
from typing import Optional

__all__ = ["latest_checkpoint"]


def latest_checkpoint(ckpt_dir: str, prefix: str) -> Optional[str]:
    """Newest ``{ckpt_dir}/{prefix}*.pt`` by modification time, or None when there is none.

    Used to resume an interrupted run from the last per-epoch (or final/exception) checkpoint.
    """
    files = [f for f in glob.glob(os.path.join(ckpt_dir, f"{prefix}*.pt")) if os.path.isfile(f)]
    return max(files, key=os.path.getmtime) if files else None
