"""How many samples the torch kernels process together (the ``chunk`` option)."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["CPU_CHUNK_VOXELS", "default_chunk"]

#: four 64x64x32 cubes (measured best of 2, 4, 8 cubes at N=32 for the shuffle kernel)
CPU_CHUNK_VOXELS = 1 << 19


def default_chunk(chunk: Optional[int], device: torch.device | str, n_voxels: int,
                  budget: int = CPU_CHUNK_VOXELS) -> int:
    """Samples processed together: ``chunk`` if given, else ``budget`` voxels' worth on CPU and
    the whole batch elsewhere. On CPU small chunks win: the kernels are memory-bound and scratch
    arrays of a few MB stay in cache and in malloc's heap (fresh large allocations cost a page
    fault per 4 KiB); on a GPU one pass over the whole batch is best."""
    if chunk is not None:
        return max(1, int(chunk))
    if torch.device(device).type == "cpu":
        return max(1, budget // max(1, n_voxels))
    return 1 << 30
