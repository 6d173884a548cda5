"""Channel width multiplier of the Genesis networks (``width=1.0`` is the published network).

``width`` scales every hidden channel count of the reference network: a layer with ``C``
channels at width 1.0 gets ``scale_channels(C, width)`` channels, i.e. ``C * width`` rounded to
the nearest integer (halves rounded up). Input channels and ``n_class`` are never scaled. At
width 0.25 the counts 32, 64, 128, 256, 512, 1024 become 8, 16, 32, 64, 128, 256 and the network
has about 1/16 of the parameters and FLOPs (both grow with the product of in- and out-channels).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["validate_width", "scale_channels", "REFERENCE_STEM_CHANNELS", "MIN_WIDTH"]

#: the narrowest hidden layer of the reference network (``down_tr64.ops.0``); widths are read off it
REFERENCE_STEM_CHANNELS = 32

#: the smallest width that still gives every layer at least one channel (32 * w rounds to >= 1)
MIN_WIDTH = 0.5 / REFERENCE_STEM_CHANNELS


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even (round(2.5) == 2); a documented, monotone rule is clearer
    return int(math.floor(x + 0.5))


def validate_width(width: float) -> float:
    """Return ``width`` as a float, or raise ``ValueError`` if it is not a usable multiplier.

    A usable width is a finite real number > 0 for which every scaled channel count is a
    positive integer, i.e. ``width >= 1/64`` (the 32-channel stem must keep >= 1 channel).
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real):
        raise ValueError(f"width must be a positive number (1.0 = the published network), got {width!r}")
    w = float(width)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"width must be a finite number > 0 (1.0 = the published network), got {width!r}")
    if _round_half_up(REFERENCE_STEM_CHANNELS * w) < 1:
        raise ValueError(
            f"width {width!r} leaves the {REFERENCE_STEM_CHANNELS}-channel stem with "
            f"{REFERENCE_STEM_CHANNELS * w:.3g} channels, which rounds to 0; use width >= {MIN_WIDTH:g}"
        )
    return w


def scale_channels(reference_channels: int, width: float) -> int:
    """Channel count at ``width`` of a layer with ``reference_channels`` at width 1.0.

    ``round_half_up(reference_channels * width)``, at least 1; e.g. ``scale_channels(512, 0.25) == 128``.
    """
    return max(1, _round_half_up(reference_channels * validate_width(width)))
