"""The intensity presets: which raw window maps to [0, 1], for cube extraction and for training configs alike.

One table, :data:`INTENSITY_PRESETS`, read by

* :func:`intensity_window` / :func:`normalise_intensity` (NumPy, used by cube extraction), and
* :func:`intensity_transform` (a MONAI dictionary transform, used by the fine-tuning and
  inference configs),

so that pretraining cubes and fine-tuning inputs are scaled the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from monai.transforms import MapTransform

__all__ = [
    "INTENSITY_PRESETS",
    "PRESET_ALIASES",
    "MODALITIES",
    "MRI_NORMALIZATIONS",
    "preset_name",
    "intensity_window",
    "normalise_intensity",
    "intensity_transform",
]

#: preset name -> (low, high) raw window clipped and mapped linearly to [0, 1]; None = each image's own min..max
INTENSITY_PRESETS: Dict[str, Optional[Tuple[float, float]]] = {
    "ct": (-1000.0, 1000.0),  # the Genesis CT window (HU)
    "mri_fixed": (0.0, 4000.0),  # the reference README's MRI advice
    "mri_minmax": None,  # per image min-max, as the authors used for BraTS (ModelsGenesis #36)
}
#: other accepted names: "mri" is "mri_fixed", or "mri_minmax" with ``mri_normalization="minmax"``
PRESET_ALIASES: Dict[str, str] = {"mri": "mri_fixed"}
#: every accepted modality / preset name: ("ct", "mri", "mri_fixed", "mri_minmax")
MODALITIES: Tuple[str, ...] = tuple(sorted(set(INTENSITY_PRESETS) | set(PRESET_ALIASES)))
#: how ``"mri"`` is normalised: "fixed" (the ``mri_fixed`` window) or "minmax" (per image)
MRI_NORMALIZATIONS: Tuple[str, ...] = ("fixed", "minmax")


def preset_name(modality: str, mri_normalization: str = "fixed") -> str:
    """The preset (a key of :data:`INTENSITY_PRESETS`) for ``modality``; ``"mri"`` follows ``mri_normalization``.

    Raises ValueError naming the accepted names for anything else.
    """
    name = str(modality).lower()
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
    if name == "mri":
        if mri_normalization not in MRI_NORMALIZATIONS:
            raise ValueError(f"mri_normalization must be one of {MRI_NORMALIZATIONS}, got {mri_normalization!r}")
        return f"mri_{mri_normalization}"
    return PRESET_ALIASES.get(name, name)


def _window(values: Sequence[float], what: str) -> Tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if not hi > lo:
        raise ValueError(f"{what} must have hi > lo, got ({lo}, {hi})")
    return lo, hi


def intensity_window(
    volume: np.ndarray,
    modality: str = "ct",
    *,
    hu_window: Optional[Sequence[float]] = None,
    mri_window: Optional[Sequence[float]] = None,
    mri_normalization: str = "fixed",
    window: Optional[Sequence[float]] = None,
) -> Tuple[float, float]:
    """The (lo, hi) raw intensity window mapped to [0, 1] for ``volume`` (any shape).

    ``window`` overrides everything; otherwise the preset of ``modality`` (:func:`preset_name`)
    decides: CT uses ``hu_window`` (default the ``"ct"`` preset, -1000..1000 HU), ``"mri"`` /
    ``"mri_fixed"`` uses ``mri_window`` (default 0..4000), ``"mri_minmax"`` (or
    ``mri_normalization="minmax"``) the volume's own min and max. Raises ValueError when the
    window is empty (e.g. a constant volume under min-max).
    """
    name = preset_name(modality, mri_normalization)
    if window is not None:
        return _window(window, "intensity window")
    override = {"ct": hu_window, "mri_fixed": mri_window}.get(name)
    if override is not None:
        return _window(override, "intensity window")
    preset = INTENSITY_PRESETS[name]
    if preset is not None:
        return preset
    lo, hi = float(np.min(volume)), float(np.max(volume))
    if not hi > lo:
        raise ValueError(f"constant volume (all values {lo}): per-image min-max normalisation is undefined")
    return lo, hi


def normalise_intensity(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``clip(values, lo, hi)`` mapped linearly to [0, 1], as float32 (any shape in, same shape out)."""
    out = np.clip(np.asarray(values, dtype=np.float32), lo, hi)
    out -= np.float32(lo)
    out /= np.float32(hi - lo)
    # float32 rounding can leave 1 + eps when hi - lo is not representable: keep the contract exact
    np.clip(out, 0.0, 1.0, out=out)
    return out


def intensity_transform(
    preset: str = "ct", keys: Union[str, Sequence[str]] = "image", window: Optional[Sequence[float]] = None
) -> "MapTransform":
    """Dictionary transform mapping intensities to [0, 1] with the window of ``preset``.

    Args:
        preset: a name of :data:`MODALITIES`: ``"ct"`` (HU window -1000..1000), ``"mri_fixed"`` /
            ``"mri"`` (0..4000) or ``"mri_minmax"`` (each image's own min..max).
        keys: keys to transform.
        window: (a_min, a_max) overriding the preset's window (clipped, then scaled to [0, 1]).
    """
    from monai.transforms import ScaleIntensityd, ScaleIntensityRanged

    if window is not None:
        lo, hi = _window(window, "intensity window (a_min, a_max)")
    else:
        if str(preset).lower() not in MODALITIES:
            raise ValueError(f"unknown intensity preset {preset!r}; choose one of {MODALITIES}")
        rng = INTENSITY_PRESETS[preset_name(preset)]
        if rng is None:
            return ScaleIntensityd(keys=keys, minv=0.0, maxv=1.0)
        lo, hi = rng
    return ScaleIntensityRanged(keys=keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
