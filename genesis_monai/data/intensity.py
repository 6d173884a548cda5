"""Intensity normalisation presets shared by fine-tuning and inference configs."""

from __future__ import annotations

from typing import Optional, Sequence, Union

from monai.transforms import MapTransform, ScaleIntensityd, ScaleIntensityRanged

__all__ = ["intensity_transform", "INTENSITY_PRESETS"]

#: name -> (a_min, a_max) window mapped to [0, 1] with clipping; None = per-image min-max
INTENSITY_PRESETS = {
    "ct": (-1000.0, 1000.0),  # the Genesis CT window (HU)
    "mri_fixed": (0.0, 4000.0),  # the reference README's MRI advice
    "mri_minmax": None,  # per image min-max, as the authors used for BraTS (ModelsGenesis #36)
}


def intensity_transform(
    preset: str = "ct", keys: Union[str, Sequence[str]] = "image", window: Optional[Sequence[float]] = None
) -> MapTransform:
    """Dictionary transform mapping intensities to [0, 1].

    Args:
        preset: ``"ct"`` (HU window -1000..1000), ``"mri_fixed"`` (0..4000) or ``"mri_minmax"``
            (each image's own min..max).
        keys: keys to transform.
        window: (a_min, a_max) overriding the preset's window (clipped, then scaled to [0, 1]).
    """
    if window is not None:
        lo, hi = (float(v) for v in window)
    else:
        if preset not in INTENSITY_PRESETS:
            raise ValueError(f"unknown intensity preset {preset!r}; choose one of {sorted(INTENSITY_PRESETS)}")
        rng = INTENSITY_PRESETS[preset]
        if rng is None:
            return ScaleIntensityd(keys=keys, minv=0.0, maxv=1.0)
        lo, hi = rng
    if not hi > lo:
        raise ValueError(f"intensity window must have a_max > a_min, got ({lo}, {hi})")
    return ScaleIntensityRanged(keys=keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
