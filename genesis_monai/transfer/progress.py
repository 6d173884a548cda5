"""One line per stage (and per validation) on stdout, so a long comparison never looks frozen."""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

__all__ = ["Progress"]


class Progress:
    """Prints ``[mm:ss] (k/n) stage: detail`` lines, and indented event lines within a stage.

    Args:
        n_stages: how many stages the job has (for the ``k/n`` counter).
        budget_s: the job's wall-clock budget, shown as the time left on each stage line.
        stream: where lines go (default stdout); None silences them.
    """

    def __init__(self, n_stages: int, budget_s: Optional[float] = None, stream: Optional[IO[str]] = sys.stdout):
        self.n_stages = int(n_stages)
        self.budget_s = budget_s
        self.stream = stream
        self.start = time.perf_counter()
        self.k = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.start

    def _clock(self) -> str:
        s = int(self.elapsed)
        return f"[{s // 60:02d}:{s % 60:02d}]"

    def _print(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    def stage(self, text: str) -> None:
        """Start the next stage: ``[mm:ss] (k/n) text (budget left)``."""
        self.k += 1
        left = "" if self.budget_s is None else f"  [{max(0.0, self.budget_s - self.elapsed) / 60:.1f} min of budget left]"
        self._print(f"{self._clock()} ({self.k}/{self.n_stages}) {text}{left}")

    def event(self, text: str) -> None:
        """An event within the current stage (e.g. a validation result)."""
        self._print(f"{self._clock()}       {text}")
