"""Why a volume gives no pretraining cubes: checks on its header (before folds are dealt) and on its voxels.

* :func:`header_problem` reads only the header (NIfTI / MetaImage / NRRD): unreadable file, missing
  optional reader, not 3D, too small for crop + borders. Folder extraction runs it on every volume
  first and deals only the volumes that pass, so a bad file never takes a fold's place.
* :func:`intensity_problem` looks at the voxels: NaN/inf, constant, values that do not fit the
  modality (raw CT without RescaleIntercept, CT read as MRI, a window that would blank the cubes).
* :func:`no_cubes_reason` explains an empty result of the rejection rule with the scores seen.

Each returns None (no problem) or a one-line reason without the path (the caller names the file).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from genesis_monai.data.cubes import VolumeTooSmallError, corner_ranges
from genesis_monai.data.extraction_options import ExtractionOptions
from genesis_monai.data.intensity import intensity_window
from genesis_monai.data.readers import MissingReaderError, VolumeReadError, read_volume_header

__all__ = ["header_problem", "intensity_problem", "no_cubes_reason", "one_line"]

#: longest reason kept on one log line; the whole message goes to the DEBUG log
_MAX_REASON = 240


def one_line(message: str, path: Optional[str] = None) -> str:
    """``message`` as one log line: without a leading ``"{path}: "``, first line only, at most 240 characters."""
    text = str(message)
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(message).__name__
    if len(lines) > 1:
        text += " ..."
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def header_problem(path: str, options: ExtractionOptions) -> Optional[str]:
    """A reason to skip ``path`` that its header already shows, else None (also for DICOM series: not checked).

    Raises nothing: reader errors become the reason (see :func:`one_line` for the log line).
    """
    try:
        header = read_volume_header(path, options.dicom_reader)
    except (VolumeReadError, MissingReaderError) as err:
        return str(err)
    if header is None:
        return None
    if len(header.shape) != 3:
        return f"{path}: expected a 3D volume, got an image of shape {header.shape}"
    if options.spacing is None:  # after resampling the size is known only once read
        try:
            corner_ranges(header.shape, options.crop, options.len_depth, options.border)
        except VolumeTooSmallError as err:
            return str(err)
    return None


def intensity_problem(vol: np.ndarray, options: ExtractionOptions) -> Optional[str]:
    """A reason to skip when the intensities of ``vol`` do not fit the modality, else None."""
    vmin, vmax = float(np.min(vol)), float(np.max(vol))
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        return "contains NaN or infinite values"
    if vmax == vmin:
        return f"constant intensity {vmin:g}"
    preset, fixed = options.preset, options.window is not None
    if preset == "ct" and not fixed and vmin >= 0:
        return (f"values in [{vmin:g}, {vmax:g}] with nothing below 0: not CT in HU (raw stored values "
                "without RescaleIntercept, or MRI?); use --modality mri or convert to HU")
    if preset == "mri_fixed" and not fixed and vmin < -500:
        return f"values down to {vmin:g}: looks like CT in HU, not MRI; use --modality ct"
    if preset != "mri_minmax" or fixed:
        lo, hi = intensity_window(vol, preset, hu_window=options.hu_window, mri_window=options.mri_window,
                                  window=options.window)
        covered = (min(vmax, hi) - max(vmin, lo)) / (hi - lo)
        if covered < 0.01:
            return (f"values in [{vmin:g}, {vmax:g}] fill {max(covered, 0) * 100:.2g}% of the intensity window "
                    f"[{lo:g}, {hi:g}]: cubes would be blank; check --modality / the window "
                    "(--mri_normalization minmax for MRI in arbitrary units)")
    return None


def no_cubes_reason(info: Mapping[str, Any], options: ExtractionOptions) -> str:
    """Why no candidate passed, from ``extract_cubes(..., return_info=True)``'s info, with the option to change."""
    lo, hi = info["score_range"] or (float("nan"), float("nan"))
    if info["rule"] == "lung":
        hint = (f"the least dense candidate scored {lo:.3f} of the cube volume > lung_max "
                f"{options.lung_max:g}; raise --lung_max, or use --rule tissue/off")
    else:
        hint = (f"the densest candidate scored {hi:.3f} of the cube volume < tissue_min "
                f"{options.tissue_min:g}; lower --tissue_min or --tissue_threshold, or --rule off")
    return f"0 cubes: none of {info['tries']} candidates passed the {info['rule']} rule ({hint})"
