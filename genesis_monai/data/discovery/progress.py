"""Progress bars for the long self-discovery steps: tqdm when installed, else one plain line per 10%."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


class _Plain:
    """A minimal stand-in for tqdm: prints ``desc: n/total`` at every 10% step to stderr."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self._shown = max(int(total), 0), desc, 0, -1

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        step = 10 * self.n // self.total if self.total else 10
        if step != self._shown:
            self._shown = step
            print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr)

    def close(self) -> None:
        pass


class _Off:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """An object with ``update(n)`` and ``close()``: a tqdm bar, a plain-line fallback, or nothing (not ``enabled``)."""
    if not enabled:
        return _Off()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return _Plain(total, desc)
    return tqdm(total=int(total), desc=desc, leave=False, dynamic_ncols=True)
