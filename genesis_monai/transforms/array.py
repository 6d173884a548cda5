"""Per-sample MONAI array transforms for the Genesis degradations.

Each transform takes one sample (C, X, Y, Z) (``spatial_dims=3``, default) or (C, X, Y)
(``spatial_dims=2``) with values in [0, 1] - a torch tensor, MetaTensor or numpy array - and
returns the same kind (meta kept). Every call checks the shape and, unless ``check_range=False``,
the value range (one pass, :func:`.validation.check_range`), whether or not the transform
applies this time. Internally it adds a batch dimension and calls the batched kernel of
:mod:`.functional`, so the per-sample and the batch paths are one implementation. Randomness
comes from ``self.R`` (MONAI's ``set_random_state``): ``randomize()`` decides whether to apply
(``prob``) and draws the seed of a ``torch.Generator`` that drives the kernel. The input is never
modified.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type

from . import functional as F
from . import validation

__all__ = ["RandLocalPixelShuffle", "RandBezierIntensity", "RandInPaint", "RandOutPaint"]

_MAX_SEED = 2**31 - 1


def _as_plain_tensor(img: NdarrayOrTensor) -> torch.Tensor:
    t = torch.as_tensor(img)
    return t.as_tensor() if hasattr(t, "as_tensor") else t


class _GenesisRandTransform(RandomizableTransform):
    """Shared plumbing: prob, seed per call, batch-of-one call into a kernel."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 1.0, spatial_dims: int = 3, check_range: bool = True):
        RandomizableTransform.__init__(self, prob)
        self.spatial_dims = validation.check_spatial_dims(spatial_dims, type(self).__name__)
        self.check_range = bool(check_range)
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._seed = int(self.R.randint(0, _MAX_SEED))

    def _kernel(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batched kernel on ``x`` (1, C, *spatial), already checked."""
        raise NotImplementedError

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """``img``: (C, *spatial) in [0, 1]. Returns a new degraded sample of the same kind, or
        ``img`` itself when the transform is not applied this time."""
        if randomize:
            self.randomize()
        x = _as_plain_tensor(img)
        name = type(self).__name__
        validation.check_sample(x, name, self.spatial_dims)
        if self.check_range:
            validation.check_range(x, f"{name} input")
        if not self._do_transform:
            return img
        generator = torch.Generator(device=x.device)
        generator.manual_seed(self._seed)
        out = self._kernel(x.unsqueeze(0), generator)[0]
        return convert_to_dst_type(out, dst=img)[0]


class RandLocalPixelShuffle(_GenesisRandTransform):
    """Models Genesis local pixel shuffling (see :func:`.functional.local_pixel_shuffle`):
    ``n_blocks`` small blocks, each a permutation of the original window, later ones on top."""

    def __init__(self, prob: float = 1.0, n_blocks: int = 10_000, permutations: str = "exact", pool_size: int = 64,
                 spatial_dims: int = 3, check_range: bool = True):
        super().__init__(prob, spatial_dims, check_range)
        if permutations not in F.PERMUTATION_MODES:
            raise ValueError(f"permutations must be one of {F.PERMUTATION_MODES}, got {permutations!r}")
        self.n_blocks, self.permutations, self.pool_size = int(n_blocks), permutations, int(pool_size)

    def _kernel(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.local_pixel_shuffle(x, self.n_blocks, generator, self.permutations, self.pool_size,
                                     check_range=False)


class RandBezierIntensity(_GenesisRandTransform):
    """Models Genesis non-linear intensity map: a random cubic Bezier curve through (0,0) and
    (1,1), intensity-inverting with probability ``invert_prob`` (see :func:`.functional.bezier_map`)."""

    def __init__(self, prob: float = 1.0, invert_prob: float = 0.5, n_points: int = 4096,
                 lut_size: Optional[int] = None, spatial_dims: int = 3, check_range: bool = True):
        super().__init__(prob, spatial_dims, check_range)
        self.invert_prob, self.n_points, self.lut_size = float(invert_prob), int(n_points), lut_size

    def _kernel(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        points, invert = F.sample_bezier_params(1, generator, x.device, self.invert_prob)
        return F.bezier_map(x, points, invert, self.n_points, self.lut_size, check_range=False)


class RandInPaint(_GenesisRandTransform):
    """Models Genesis in-painting: ``min_boxes``..``max_boxes`` boxes (size D//6..D//3 per axis)
    filled with U[0,1) noise."""

    def __init__(self, prob: float = 1.0, min_boxes: int = 0, max_boxes: int = 5, continue_prob: float = 0.95,
                 spatial_dims: int = 3, check_range: bool = True):
        super().__init__(prob, spatial_dims, check_range)
        self.min_boxes, self.max_boxes, self.continue_prob = int(min_boxes), int(max_boxes), float(continue_prob)

    def _kernel(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.in_paint(x, generator, self.min_boxes, self.max_boxes, self.continue_prob, check_range=False)[0]


class RandOutPaint(_GenesisRandTransform):
    """Models Genesis out-painting: U[0,1) noise everywhere except ``min_boxes``..``max_boxes``
    boxes (size D - U[3D//7, 4D//7] per axis) that keep the original."""

    def __init__(self, prob: float = 1.0, min_boxes: int = 1, max_boxes: int = 5, continue_prob: float = 0.95,
                 spatial_dims: int = 3, check_range: bool = True):
        super().__init__(prob, spatial_dims, check_range)
        self.min_boxes, self.max_boxes, self.continue_prob = int(min_boxes), int(max_boxes), float(continue_prob)

    def _kernel(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.out_paint(x, generator, self.min_boxes, self.max_boxes, self.continue_prob, check_range=False)[0]
