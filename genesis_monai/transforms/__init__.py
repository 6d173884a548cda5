"""Models Genesis family degradations as MONAI transforms.

- :class:`GenesisDegrade` (``batch``): the whole recipe on a batch, on its device; presets
  "models_genesis", "semantic_genesis", "transvw".
- array transforms (``array``): ``RandLocalPixelShuffle``, ``RandBezierIntensity``, ``RandInPaint``,
  ``RandOutPaint``; dictionary transforms (``dictionary``): the same with a ``d`` suffix, plus
  ``GenesisDegraded``.
- ``functional``: the batched kernels all of them share; on CPU they dispatch to ``cpu_kernel``
  (the compiled one-pass C kernel, ``csrc/degrade.c``, built on first use) unless
  ``kernel="torch"``; ``buffer_pool`` recycles its output buffers.
"""

from . import functional
from .array import RandBezierIntensity, RandInPaint, RandLocalPixelShuffle, RandOutPaint
from .batch import PRESETS, GenesisDegrade
from .dictionary import (GenesisDegraded, RandBezierIntensityd, RandInPaintd, RandLocalPixelShuffled,
                         RandOutPaintd)

__all__ = [
    "GenesisDegrade",
    "PRESETS",
    "GenesisDegraded",
    "RandLocalPixelShuffle",
    "RandLocalPixelShuffled",
    "RandBezierIntensity",
    "RandBezierIntensityd",
    "RandInPaint",
    "RandInPaintd",
    "RandOutPaint",
    "RandOutPaintd",
    "functional",
]
