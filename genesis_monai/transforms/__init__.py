"""Models Genesis family degradations as MONAI transforms.

- :class:`GenesisDegrade` (``batch``): the whole recipe on a batch, on its device; presets
  "models_genesis", "semantic_genesis", "transvw".
- array transforms (``array``): ``RandLocalPixelShuffle``, ``RandBezierIntensity``, ``RandInPaint``,
  ``RandOutPaint``; dictionary transforms (``dictionary``): the same with a ``d`` suffix, plus
  ``GenesisDegraded``.
- ``functional``: the public batched kernels and samplers all of them share, re-exported from
  one module per job: ``sampling`` (the random samplers), ``flip``, ``shuffle``, ``bezier``,
  ``painting`` (the four degradations), ``validation`` (shape and [0, 1] range checks).
- ``kernel_choice``: the one place that decides whether the compiled CPU kernel (``cpu_kernel``,
  ``csrc/degrade.c``, built on first use; ``buffer_pool`` recycles its output buffers) or torch
  runs a call, and why.
- ``elastic``: :class:`RandElasticInPlane`, the in-plane elastic deformation Semantic Genesis /
  TransVW apply before degrading, on the whole batch.
- ``plan`` / ``execution``: ``GenesisDegrade`` draws one per-batch plan, then runs it with the
  chosen kernel.
"""

from . import functional
from .array import RandBezierIntensity, RandInPaint, RandLocalPixelShuffle, RandOutPaint
from .batch import DESCRIBE_KEYS, PRESETS, GenesisDegrade
from .elastic import RandElasticInPlane
from .dictionary import (GenesisDegraded, RandBezierIntensityd, RandInPaintd, RandLocalPixelShuffled,
                         RandOutPaintd)

__all__ = [
    "GenesisDegrade",
    "PRESETS",
    "DESCRIBE_KEYS",
    "GenesisDegraded",
    "RandLocalPixelShuffle",
    "RandLocalPixelShuffled",
    "RandBezierIntensity",
    "RandBezierIntensityd",
    "RandInPaint",
    "RandInPaintd",
    "RandOutPaint",
    "RandOutPaintd",
    "RandElasticInPlane",
    "functional",
]

# SMART-Net slice preparation (issue 13): CLAHE, empty-end-slice crop, lesion-slice sampling, small components
from .clahe import CLAHE, CLAHEd
from .components import RemoveSmallComponents, RemoveSmallComponentsd
from .slices import CropEmptyEndSlices, CropEmptyEndSlicesd, RandLesionSlice, RandLesionSliced

__all__ += [
    "CLAHE",
    "CLAHEd",
    "CropEmptyEndSlices",
    "CropEmptyEndSlicesd",
    "RandLesionSlice",
    "RandLesionSliced",
    "RemoveSmallComponents",
    "RemoveSmallComponentsd",
]
