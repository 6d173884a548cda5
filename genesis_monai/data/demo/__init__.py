"""Procedural demo data sets: the package's embedded, deterministic data (no download, no patient data).

``python -m genesis_monai demo-data DIR`` (or :func:`write_demo_dataset`) writes a small
Decathlon-style data set of synthetic volumes with labels, so that every bundle can pretrain,
fine-tune and infer out of the box. Today there is one phantom, the chest CT with lung nodules
(:mod:`~genesis_monai.data.demo.chest_ct`, :func:`make_demo_volume`).

Modules (one job each):

* :mod:`~genesis_monai.data.demo.geometry`: mm grids, smoothing, correlated noise, rotations,
  tubes and branching trees (vectorised NumPy, randomness from a ``numpy.random.Generator``);
* :mod:`~genesis_monai.data.demo.chest_ct`: the chest-CT anatomy, its HU constants and its
  :data:`CHEST_CT` description;
* :mod:`~genesis_monai.data.demo.phantom`: :class:`Phantom`, what the writer needs to know about
  a phantom, and the NIfTI encoder;
* :mod:`~genesis_monai.data.demo.writer`: :func:`write_demo_dataset` (atomic files, resumable
  through a hidden progress file, ``dataset.json`` last), :func:`demo_split`, :func:`demo_data_dir`;
* :mod:`~genesis_monai.data.demo.checks`: argument checks shared by the phantoms and the writer.

How a new phantom (e.g. a 2-D head-CT slice for SMART-Net, a 2-D chest X-ray for Adam) plugs in:

1. write ``genesis_monai/data/demo/<name>.py`` with a ``make(index, shape, spacing, seed) ->
   (image, label)`` function, deterministic by ``numpy.random.default_rng(SeedSequence([seed,
   index]))``, built on :mod:`geometry` where it helps (label None for an unlabeled phantom);
2. describe it with a :class:`Phantom` (a new ``generator`` id, ``min_shape`` of length 2 for 2-D,
   defaults, the Decathlon ``modality`` / ``labels`` fields, and ``encode`` / ``suffix`` if it is not
   written as gzipped NIfTI);
3. add it to :data:`~genesis_monai.data.demo.writer.PHANTOMS`: ``write_demo_dataset(dir,
   phantom="<name>")`` and ``demo-data DIR --phantom <name>`` then write it, with the same split,
   resume and atomic-write behaviour as the chest CT.
"""

from genesis_monai.data.demo.chest_ct import (  # noqa: F401
    CHEST_CT,
    DEMO_N_VOLUMES,
    DEMO_SHAPE,
    DEMO_SPACING,
    GENERATOR_VERSION,
    make_demo_volume,
)
from genesis_monai.data.demo.phantom import Phantom  # noqa: F401
from genesis_monai.data.demo.head_ct import (  # noqa: F401
    HEAD_CT,
    HEAD_CT_N_VOLUMES,
    HEAD_CT_SHAPE,
    HEAD_CT_SPACING,
    HEMORRHAGE_KINDS,
    head_ct_lesion_kinds,
    make_head_ct_volume,
)
from genesis_monai.data.demo.writer import PHANTOMS, demo_data_dir, demo_split, write_demo_dataset  # noqa: F401

__all__ = [
    "make_demo_volume",
    "write_demo_dataset",
    "demo_data_dir",
    "demo_split",
    "Phantom",
    "PHANTOMS",
    "CHEST_CT",
    "DEMO_SHAPE",
    "DEMO_SPACING",
    "DEMO_N_VOLUMES",
    "GENERATOR_VERSION",
    "make_head_ct_volume",
    "head_ct_lesion_kinds",
    "HEAD_CT",
    "HEAD_CT_SHAPE",
    "HEAD_CT_SPACING",
    "HEAD_CT_N_VOLUMES",
    "HEMORRHAGE_KINDS",
]
