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
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "VOLUME_READERS",
    "VOLUME_SUFFIXES",
    "DICOM_SUFFIXES",
    "IGNORED_DIRS",
    "VolumeReadError",
    "MissingReaderError",
    "VolumeHeader",
    "iter_volumes",
    "list_volumes",
    "has_volumes",
    "is_dicom_file",
    "is_volume_file",
    "reader_name_for",
    "read_volume_header",
    "read_volume",
]

#: the one suffix table: file suffix (lower case) -> MONAI reader class; DICOM series are folders (below)
VOLUME_READERS: Dict[str, str] = {
    ".nii": "NibabelReader",
    ".nii.gz": "NibabelReader",
    ".mhd": "ITKReader",
    ".mha": "ITKReader",
    ".nrrd": "ITKReader",
    ".nhdr": "ITKReader",
}
VOLUME_SUFFIXES: Tuple[str, ...] = tuple(VOLUME_READERS)
#: suffixes of DICOM slice files (extension-less files count when they carry the DICOM preamble)
DICOM_SUFFIXES = (".dcm", ".dicom")
#: sub-folders never searched for volumes: label maps of Decathlon/nnU-Net layouts are not images
IGNORED_DIRS = ("labelsTr", "labelsTs", "labelsVal", "labels", "masks", "segmentations")


class VolumeReadError(ValueError):
    """A volume could not be read or is not a usable 3D image; the message names the file and why."""


class MissingReaderError(ImportError):
    """The optional package needed for a file type is not installed; the message names it."""


class VolumeHeader(NamedTuple):
    """What a volume's header says, read without its voxels: ``shape`` (X, Y, Z, ...), ``spacing`` (mm), ``reader``."""

    shape: Tuple[int, ...]
    spacing: Tuple[float, ...]
    reader: str


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _volume_suffix(name: str) -> Optional[str]:
    lower = name.lower()
    return next((s for s in VOLUME_SUFFIXES if lower.endswith(s)), None)


def is_volume_file(path: str) -> bool:
    """Whether ``path`` has a suffix of :data:`VOLUME_READERS` (a file :func:`read_volume_header` reads)."""
    return _volume_suffix(os.path.basename(str(path))) is not None


def _suffixes_read_by(reader: str) -> Tuple[str, ...]:
    return tuple(s for s, r in VOLUME_READERS.items() if r == reader)


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


def _holds_dicom_series(folder: str, files: Sequence[str]) -> bool:
    """Whether ``folder`` (with these sorted, non-hidden file names) holds the slices of a DICOM series.

    Only a few candidates are opened (first three and last): a series folder holds slices only.
    """
    candidates = [f for f in files if _volume_suffix(f) is None and (f.lower().endswith(DICOM_SUFFIXES) or "." not in f)]
    return any(is_dicom_file(os.path.join(folder, f)) for f in candidates[:3] + candidates[-1:])


def iter_volumes(folder: str, recursive: bool = True, exclude: Sequence[str] = (),
                 ignore_dirs: Sequence[str] = IGNORED_DIRS) -> Iterator[str]:
    """Volume paths under ``folder`` in walk order (see :func:`list_volumes`); stops as soon as the caller does."""
    folder = os.path.abspath(folder)
    excluded = {os.path.abspath(e) for e in exclude}
    ignored = {d.lower() for d in ignore_dirs}
    for root, dirs, files in os.walk(folder):
        top = root == folder
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d.lower() not in ignored
                         and os.path.join(root, d) not in excluded)
        if root in excluded:
            dirs[:] = []
            continue
        files = sorted(f for f in files if not f.startswith("."))
        if recursive or top:
            yield from (os.path.join(root, f) for f in files if _volume_suffix(f))
        if _holds_dicom_series(root, files):
            yield root
        if not (recursive or top):
            dirs[:] = []  # one level down: only series folders, nothing deeper


def list_volumes(folder: str, recursive: bool = True, exclude: Sequence[str] = (),
                 ignore_dirs: Sequence[str] = IGNORED_DIRS) -> List[str]:
    """Sorted volume paths under ``folder``: volume files and DICOM series folders (one series each).

    Volume files are those of :data:`VOLUME_READERS`; files with other suffixes (``.raw`` data files
    of ``.mhd`` headers, text, ``.npy``) are ignored; a folder is a DICOM series when it holds
    ``.dcm`` files or extension-less files carrying the DICOM preamble. Folders in ``exclude`` (e.g.
    the output folder), sub-folders named in ``ignore_dirs`` (label maps, matched case-insensitively)
    and hidden entries are skipped. ``recursive=False`` lists the entries of ``folder`` only: its
    volume files and its sub-folders that hold a DICOM series (and ``folder`` itself when it is one).
    """
    return sorted(iter_volumes(folder, recursive, exclude, ignore_dirs))


def has_volumes(folder: str, exclude: Sequence[str] = ()) -> bool:
    """Whether :func:`list_volumes` would find anything under ``folder`` (stops at the first volume)."""
    return next(iter_volumes(folder, exclude=exclude), None) is not None


def reader_name_for(path: str, dicom_reader: str = "auto") -> str:
    """MONAI reader class name for ``path``; :class:`MissingReaderError` names a missing optional package."""
    suffix = _volume_suffix(path)
    if suffix is not None:
        reader = VOLUME_READERS[suffix]
        if reader == "ITKReader" and not _installed("itk"):
            raise MissingReaderError(
                f"{path}: reading {suffix} files needs the optional package 'itk' "
                "(pip install itk, or pip install 'genesis-monai[dicom]')")
        return reader
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
    raise VolumeReadError(f"{path}: not a volume this package reads (NIfTI {_suffixes_read_by('NibabelReader')}, "
                          f"ITK {_suffixes_read_by('ITKReader')}, or a folder with one DICOM series)")


def _cannot_read(path: str, reader: str, err: BaseException) -> VolumeReadError:
    return VolumeReadError(f"{path}: cannot be read with {reader}: {type(err).__name__}: {err}")


def _drop_trailing_singletons(shape: Sequence[int]) -> Tuple[int, ...]:
    """NIfTI volumes sometimes carry trailing singleton axes (X, Y, Z, 1): that is still 3D."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _require_3d(path: str, shape: Tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise VolumeReadError(f"{path}: expected a 3D volume, got an image of shape {shape}")


def read_volume_header(path: str, dicom_reader: str = "auto") -> Optional[VolumeHeader]:
    """The header of a volume file, without reading its voxels; None for a DICOM series (not known cheaply).

    NIfTI through nibabel (lazy: only the header is decoded), MetaImage / NRRD through ITK's
    ``ImageIO.ReadImageInformation``. Trailing singleton axes are dropped from the shape.

    Raises:
        MissingReaderError: the optional package for this file type is missing (named).
        VolumeReadError: the header cannot be read (the message names the file and the reader's error).
    """
    reader = reader_name_for(path, dicom_reader)
    if _volume_suffix(path) is None:
        return None  # a DICOM series: its shape needs every slice's position
    try:
        if reader == "NibabelReader":
            import nibabel as nib

            img = nib.load(path)
            shape, spacing = img.shape, img.header.get_zooms()
        else:
            import itk

            io = itk.ImageIOFactory.CreateImageIO(path, itk.CommonEnums.IOFileMode_ReadMode)
            if io is None:
                raise OSError("ITK has no ImageIO that recognises this file")
            io.SetFileName(path)
            io.ReadImageInformation()
            ndim = io.GetNumberOfDimensions()
            shape = [io.GetDimensions(i) for i in range(ndim)]
            spacing = [io.GetSpacing(i) for i in range(ndim)]
    except Exception as err:  # nibabel/ITK raise many types (ImageFileError, EOFError, RuntimeError, ...)
        raise _cannot_read(path, reader, err) from err
    shape = _drop_trailing_singletons(shape)
    return VolumeHeader(shape, tuple(float(v) for v in spacing[: len(shape)]), reader)


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
    from monai.data.utils import affine_to_spacing
    from monai.utils import convert_to_numpy

    reader_name = reader_name_for(path, dicom_reader)
    try:
        img = _loader(reader_name)(path)
    except MissingReaderError:
        raise
    except Exception as err:  # readers raise many types (RuntimeError, OSError, nibabel/itk errors)
        raise _cannot_read(path, reader_name, err) from err
    shape = _drop_trailing_singletons(img.shape)
    img = img.reshape(shape) if tuple(img.shape) != shape else img
    _require_3d(path, shape)
    affine = getattr(img, "affine", None)
    pixdim = None if affine is None else tuple(float(v) for v in affine_to_spacing(affine, r=3))
    if spacing is not None:
        from monai.transforms import Spacing

        target = tuple(float(s) for s in spacing)
        if len(target) != 3 or min(target) <= 0:
            raise ValueError(f"spacing must be 3 positive numbers in mm, got {spacing!r}")
        img = Spacing(pixdim=target, mode=interp)(img[None])[0]
        pixdim = target
    array = convert_to_numpy(img, dtype=np.float32)
    return array, {"path": path, "spacing": pixdim, "shape": tuple(array.shape), "reader": reader_name}
