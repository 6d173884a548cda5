"""The plug-in contract between a procedural phantom and the demo data-set writer: :class:`Phantom`."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

__all__ = ["Phantom", "nifti_gz_bytes"]


def nifti_gz_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Bytes of a gzipped NIfTI-1 file of ``array`` (2D or 3D) with ``affine`` as qform and sform, units mm.

    No time stamp in the gzip header: the same array gives the same bytes.
    """
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


@dataclass(frozen=True)
class Phantom:
    """What :func:`~genesis_monai.data.demo.writer.write_demo_dataset` needs to know about a phantom.

    Attributes:
        name: registry key (``write_demo_dataset(phantom=name)``, ``demo-data --phantom name``).
        generator: id recorded in ``dataset.json`` (``genesis_demo.generator``): a data set is
            regenerated in place only by the phantom that wrote it.
        version: bumped whenever ``make``'s output changes: stored data sets of another version are
            regenerated.
        make: ``(index, shape, spacing, seed) -> (image, label)``, arrays of ``shape`` (label None for
            an unlabeled phantom); the same arguments must give the same bytes.
        affine: ``(shape, spacing) -> (ndim + 1, ndim + 1)`` affine of the written files.
        min_shape: smallest accepted shape per axis; its length is the number of dimensions.
        default_shape, default_spacing, default_n_volumes: the defaults of the written data set.
        title, description, modality, labels: the Decathlon ``dataset.json`` fields ``name``,
            ``description``, ``modality`` ({"0": "CT"}), ``labels`` (None: unlabeled, no ``labelsTr``).
        axes: a sentence on the axis order and orientation (recorded in ``dataset.json``).
        file_prefix, suffix: files are ``imagesTr/{file_prefix}_{index:03d}{suffix}``.
        encode: ``(array, affine) -> bytes`` of one file (default gzipped NIfTI).
        entry_fields: optional ``(index, seed) -> dict`` of JSON values added to volume ``index``'s
            datalist entry (e.g. the head CT's ``hemorrhage`` flag), computed without making the volume
            so that a resumed run knows them too.
    """

    name: str
    generator: str
    version: int
    make: Callable[[int, Tuple[int, ...], Tuple[float, ...], int], Tuple[np.ndarray, Optional[np.ndarray]]]
    affine: Callable[[Tuple[int, ...], Tuple[float, ...]], np.ndarray]
    min_shape: Tuple[int, ...]
    default_shape: Tuple[int, ...]
    default_spacing: Tuple[float, ...]
    default_n_volumes: int
    title: str
    description: str
    modality: Mapping[str, str]
    labels: Optional[Mapping[str, str]]
    axes: str
    file_prefix: str = "demo"
    suffix: str = ".nii.gz"
    encode: Callable[[np.ndarray, np.ndarray], bytes] = nifti_gz_bytes
    entry_fields: Optional[Callable[[int, int], Dict[str, Any]]] = None

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.min_shape)

    def file_name(self, index: int) -> str:
        """``{file_prefix}_{index:03d}{suffix}``, e.g. ``demo_000.nii.gz``."""
        return f"{self.file_prefix}_{int(index):03d}{self.suffix}"
