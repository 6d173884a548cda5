"""Find and read CT/MRI volumes for cube extraction, through MONAI's ``LoadImage``.

* NIfTI (``.nii``, ``.nii.gz``): MONAI's ``NibabelReader`` (nibabel is a core dependency).
* MetaImage / NRRD (``.mhd``, ``.mha``, ``.nrrd``, ``.nhdr``): ``ITKReader`` (optional package ``itk``).
* DICOM: a folder holding the slices of one series (files ``*.dcm`` or extension-less files with
  the DICOM preamble): ``ITKReader`` when ``itk`` is installed, else ``PydicomReader``
  (optional package ``pydicom``). Rescale slope/intercept are applied by the readers (values in HU).

Arrays come back as (X, Y, Z) float32, the axis order of the reference (SimpleITK's (z, y, x)
transposed), with the voxel spacing. Resampling to a target spacing is optional (off by default,
as in the reference, which keeps the native LUNA16 spacing).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "VOLUME_SUFFIXES",
    "IGNORED_DIRS",
    "VolumeReadError",
    "MissingReaderError",
    "list_volumes",
    "is_dicom_file",
    "reader_name_for",
    "read_volume",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nhdr")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
DICOM_SUFFIXES = (".dcm", ".dicom")
#: sub-folders never searched for volumes: label maps of Decathlon/nnU-Net layouts are not images
IGNORED_DIRS = ("labelsTr", "labelsTs", "labelsVal", "labels", "masks", "segmentations")


class VolumeReadError(ValueError):
    """A volume could not be read or is not a usable 3D image; the message names the file and why."""


class MissingReaderError(ImportError):
    """The optional package needed for a file type is not installed; the message names it."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def is_dicom_file(path: str) -> bool:
    """True for ``*.dcm`` files and for files carrying the DICOM preamble ("DICM" at byte 128)."""
    if path.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_volume_file(name: str) -> bool:
    return name.lower().endswith(VOLUME_SUFFIXES)


def list_volumes(folder: str, recursive: bool = True, exclude: Sequence[str] = (),
                 ignore_dirs: Sequence[str] = IGNORED_DIRS) -> List[str]:
    """Sorted volume paths under ``folder``: volume files and DICOM series folders (one series each).

    Files with other suffixes (``.raw`` data files of ``.mhd`` headers, text, ``.npy``) are ignored;
    extension-less files count as DICOM only when they carry the DICOM preamble. Folders in
    ``exclude`` (e.g. the output folder), sub-folders named in ``ignore_dirs`` (label maps, matched
    case-insensitively) and hidden entries are skipped.
    """
    folder = os.path.abspath(folder)
    excluded = {os.path.abspath(e) for e in exclude}
    ignored = {d.lower() for d in ignore_dirs}
    found: List[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d.lower() not in ignored
                         and os.path.join(root, d) not in excluded)
        if os.path.abspath(root) in excluded:
            dirs[:] = []
            continue
        files = [f for f in files if not f.startswith(".")]
        found.extend(os.path.join(root, f) for f in files if _is_volume_file(f))
        candidates = [f for f in files if not _is_volume_file(f)
                      and (f.lower().endswith(DICOM_SUFFIXES) or "." not in f)]
        if any(is_dicom_file(os.path.join(root, f)) for f in candidates[:3] + candidates[-1:]):
            found.append(root)
        if not recursive:
            dirs[:] = []
    return sorted(found)


def reader_name_for(path: str, dicom_reader: str = "auto") -> str:
    """MONAI reader class name for ``path``; :class:`MissingReaderError` names a missing optional package."""
    lower = path.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "NibabelReader"
    if lower.endswith(ITK_SUFFIXES):
        if not _installed("itk"):
            raise MissingReaderError(
                f"{path}: reading {os.path.splitext(lower)[1]} files needs the optional package 'itk' "
                "(pip install itk, or pip install 'genesis-monai[dicom]')")
        return "ITKReader"
    if os.path.isdir(path) or is_dicom_file(path):
        choice = str(dicom_reader).lower()
        if choice in ("auto", "itk") and _installed("itk"):
            return "ITKReader"
        if choice in ("auto", "pydicom") and _installed("pydicom"):
            return "PydicomReader"
        wanted = {"auto": "'itk' or 'pydicom'", "itk": "'itk'", "pydicom": "'pydicom'"}.get(choice)
        if wanted is None:
            raise ValueError(f"dicom_reader must be 'auto', 'itk' or 'pydicom', got {dicom_reader!r}")
        raise MissingReaderError(
            f"{path}: reading DICOM needs the optional package {wanted} "
            "(pip install pydicom itk, or pip install 'genesis-monai[dicom]')")
    raise VolumeReadError(f"{path}: not a volume this package reads (NIfTI {NIFTI_SUFFIXES}, "
                          f"ITK {ITK_SUFFIXES}, or a folder with one DICOM series)")


_READERS: Dict[str, object] = {}


def _loader(reader_name: str):
    if reader_name not in _READERS:
        import monai.data
        from monai.transforms import LoadImage

        reader = getattr(monai.data, reader_name)()
        _READERS[reader_name] = LoadImage(reader=reader, image_only=True, dtype=np.float32)
    return _READERS[reader_name]


def read_volume(
    path: str, spacing: Optional[Sequence[float]] = None, dicom_reader: str = "auto", interp: str = "bilinear"
) -> Tuple[np.ndarray, Dict[str, object]]:
    """Read one volume as an (X, Y, Z) float32 array (HU for CT) plus ``{"path", "spacing", "shape", "reader"}``.

    Args:
        path: NIfTI / MetaImage / NRRD file, or a folder holding one DICOM series.
        spacing: target voxel spacing in mm (e.g. (1, 1, 1)); None keeps the native grid (reference).
        dicom_reader: "auto" (ITK if installed, else pydicom), "itk" or "pydicom".
        interp: interpolation for resampling ("bilinear" or "nearest").

    Raises:
        MissingReaderError: the optional package for this file type is missing (named).
        VolumeReadError: unreadable file, or not a 3D image (a trailing singleton axis is dropped).
    """
    reader_name = reader_name_for(path, dicom_reader)
    try:
        img = _loader(reader_name)(path)
    except MissingReaderError:
        raise
    except Exception as err:  # readers raise many types (RuntimeError, OSError, nibabel/itk errors)
        raise VolumeReadError(f"{path}: cannot be read with {reader_name}: {type(err).__name__}: {err}") from err
    shape = tuple(img.shape)
    # NIfTI volumes sometimes carry a trailing singleton axis (X, Y, Z, 1): that is still 3D
    while len(shape) > 3 and shape[-1] == 1:
        img = img[..., 0]
        shape = tuple(img.shape)
    if len(shape) != 3:
        raise VolumeReadError(f"{path}: expected a 3D volume, got an image of shape {shape}")
    pixdim = _spacing_of(img)
    if spacing is not None:
        from monai.transforms import Spacing

        target = tuple(float(s) for s in spacing)
        if len(target) != 3 or min(target) <= 0:
            raise ValueError(f"spacing must be 3 positive numbers in mm, got {spacing!r}")
        img = Spacing(pixdim=target, mode=interp)(img[None])[0]
        pixdim = target
    array = np.asarray(img.detach().cpu().numpy() if hasattr(img, "detach") else img, dtype=np.float32)
    return array, {"path": path, "spacing": pixdim, "shape": tuple(array.shape), "reader": reader_name}


def _spacing_of(img) -> Optional[Tuple[float, float, float]]:
    affine = getattr(img, "affine", None)
    if affine is None:
        return None
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.sqrt((a * a).sum(axis=0)))
