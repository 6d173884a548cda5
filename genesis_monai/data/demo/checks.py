"""Argument checks shared by the phantoms and the data-set writer (clear messages naming the argument)."""

from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np

__all__ = ["check_int", "check_shape", "check_spacing"]

_AXES = "XYZ"


def check_int(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (bools refused), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_shape(shape: Any, minimum: Sequence[int]) -> Tuple[int, ...]:
    """``shape`` as a tuple of ``len(minimum)`` integers, each >= its ``minimum`` entry (e.g. (32, 32, 16))."""
    n = len(minimum)
    try:
        out = tuple(int(s) for s in shape)
        ok = len(out) == n and all(float(s) == int(s) for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or any(s < m for s, m in zip(out, minimum)):
        axes = _AXES[:n]
        limits = ", ".join(f"{a} >= {m}" for a, m in zip(axes, minimum))
        raise ValueError(f"shape must be {n} integers ({', '.join(axes)}) with {limits}, got {shape!r}")
    return out


def check_spacing(spacing: Any, ndim: int = 3) -> Tuple[float, ...]:
    """``spacing`` as a tuple of ``ndim`` positive finite floats (mm per axis)."""
    try:
        out = tuple(float(s) for s in spacing)
        ok = len(out) == ndim and all(np.isfinite(s) and s > 0 for s in out)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"spacing must be {ndim} positive numbers (mm along {', '.join(_AXES[:ndim])}), "
                         f"got {spacing!r}")
    return out
