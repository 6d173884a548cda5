"""Score functions for Ignite handlers where a lower metric is better (e.g. validation MSE)."""

from __future__ import annotations

from typing import Callable

__all__ = ["lower_is_better", "metric_lower_is_better"]


def lower_is_better(current: float, previous: float) -> bool:
    """``metric_cmp_fn`` for MONAI workflows whose key metric is a loss (MSE)."""
    return current < previous


def metric_lower_is_better(metric_name: str) -> Callable:
    """Score function for ``EarlyStopHandler``/``Checkpoint``: minus ``engine.state.metrics[metric_name]``."""

    def score(engine) -> float:
        return -float(engine.state.metrics[metric_name])

    return score
