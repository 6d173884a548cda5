"""In-plane elastic deformation of a whole batch on its device (Semantic Genesis / TransVW augmentation).

The reference (``luna_loader``, research/upstream_genesis.md §6.4) deforms each cube with SciPy:
two displacement fields, one per in-plane axis, each ``gaussian_filter(U[-1, 1) noise, sigma=8,
mode="constant") * alpha`` (alpha 991) over the whole 3D cube, none along depth, then
``map_coordinates(order=1, mode="reflect")``. The torch code here does the same on the batch:

- smoothing: the truncated Gaussian (radius ``int(truncate * sigma + 0.5)``, weights normalised
  to 1, zero outside the cube: SciPy's ``mode="constant"``) as one banded matrix per axis, applied
  with three batched matrix products (BLAS is much faster than a 65-tap ``conv3d`` on a CPU);
- sampling: ``grid_sample`` (bilinear per (X, Y) slice, since depth is not displaced) with ``padding_mode="reflection"`` and
  ``align_corners=False``, which reflects about the outer voxel edges like SciPy's
  ``mode="reflect"`` (half-sample symmetric).

With the same noise both give the same cube to float precision (tests/test_elastic.py checks it
against a SciPy oracle). The reference builds its index grid with ``meshgrid`` in "xy" order, so its
``dy`` field moves axis 0 and ``dx`` axis 1; the fields are i.i.d., so which one is called which
changes nothing: here field 0 moves axis X (0) and field 1 axis Y (1).

Kernels (``kernel=``): on CPU batches, ``"auto"`` (default) runs the compiled C kernel of
:mod:`.elastic_kernel` (``csrc/elastic.c``: the same exact smoothing as register-blocked separable
passes, the bilinear reflect warp, threads over samples; ~40 ms instead of ~570 ms for a batch of
64 64x64x32 float32 cubes on 2 cores, ``python -m genesis_monai.benchmarks.sg_pipeline``), else
this module's torch code (GPUs, or when no C compiler works: then one WARNING per process);
float16/bfloat16 run in float32. ``"torch"`` always runs the torch code, ``"c"`` the kernel or an
error. The law is the same; the random stream is not: torch draws the batch's noise with one
``torch.rand``, the C kernel draws one int64 seed per sample from the generator and generates
that sample's noise from it (counter-based, so independent of the thread count and of the other
samples of the batch).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Randomizable

from . import elastic_kernel, validation
from .sampling import sample_seeds

__all__ = ["RandElasticInPlane", "gaussian_matrix", "KERNELS"]

logger = logging.getLogger(__name__)

#: ``"auto"``: the compiled CPU kernel for float32/float64 CPU batches when it builds, else torch;
#: ``"torch"``: always the torch code; ``"c"``: the compiled kernel or an error.
KERNELS = ("auto", "torch", "c")
_C_DTYPES = (torch.float32, torch.float64)
_warned = False
_warn_lock = threading.Lock()


def _reset_warning_for_tests() -> None:
    global _warned
    with _warn_lock:
        _warned = False


def _warn_fallback_once(reason: str) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    logger.warning("genesis_monai: compiled CPU elastic kernel unavailable (%s); kernel='auto' runs the torch "
                   "code on CPU instead: same law, ~15x slower, and a different random stream than the C kernel "
                   "for the same seed", reason)


def gaussian_matrix(size: int, sigma: float, truncate: float = 4.0, device: Any = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size, size) matrix ``G`` with ``(G @ v)`` = SciPy ``gaussian_filter1d(v, sigma, mode="constant", truncate=...)``."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    kernel = kernel / kernel.sum()
    idx = torch.arange(size)
    diff = idx[:, None] - idx[None, :]
    g = torch.where(diff.abs() <= radius, kernel[(diff + radius).clamp(0, 2 * radius)], torch.zeros((), dtype=torch.float64))
    return g.to(device=device, dtype=dtype)


class RandElasticInPlane(Randomizable):
    """Random in-plane elastic deformation of a batch (N, C, X, Y, Z) in [0, 1], on its device.

    Args:
        sigma: Gaussian smoothing of the noise fields, in voxels (reference 8).
        alpha: scale of the smoothed fields (reference 991): displacement std ~3.5 voxels, max ~10
            on 64x64x32 cubes.
        prob: per-sample probability of deforming (reference: always, 1.0).
        truncate: Gaussian radius in sigmas (SciPy's default 4.0).
        check_range: check that the batch lies in [0, 1] (one min/max).
        seed: seed of a private generator (or call :meth:`set_random_state`); a ``generator``
            passed to :meth:`__call__` wins.
        kernel: "auto" (default), "torch" or "c" (module docstring).
        threads: threads of the C kernel over samples (default ``torch.get_num_threads()``);
            the output does not depend on it.

    ``__call__(x, generator=None)`` returns a new tensor of ``x``'s shape, dtype and device; the
    depth axis Z is never displaced. Deformed values stay in [0, 1] (linear interpolation).

    Randomness per call, from the generator (the call's, else the private seeded one, else
    torch's global RNG): torch code: the noise (N, 2, X, Y, Z) with one ``torch.rand``, then the
    ``prob`` coins (N,); C kernel: N int64 seeds (one noise stream per sample), then the coins.
    Same seed, parameters, batch shape, dtype and kernel used (``describe()["kernel_used"]``; for
    the C kernel also the same build, :func:`.elastic_kernel.build_info`): bit-identical output.
    """

    def __init__(self, sigma: float = 8.0, alpha: float = 991.0, prob: float = 1.0, truncate: float = 4.0,
                 check_range: bool = True, seed: Optional[int] = None, kernel: str = "auto",
                 threads: Optional[int] = None) -> None:
        if not sigma > 0 or not math.isfinite(sigma):
            raise ValueError(f"RandElasticInPlane: sigma must be a positive number, got {sigma!r}")
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"RandElasticInPlane: alpha must be >= 0, got {alpha!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandElasticInPlane: prob must be in [0, 1], got {prob!r}")
        self.sigma, self.alpha, self.prob, self.truncate = float(sigma), float(alpha), float(prob), float(truncate)
        self.check_range = bool(check_range)
        if kernel not in KERNELS:
            raise ValueError(f"RandElasticInPlane: kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.threads = None if threads is None else int(threads)
        self._last_kernel: Optional[str] = None
        self._seed: Optional[int] = None
        self._generators: Dict[str, torch.Generator] = {}
        self._matrices: Dict[Tuple[int, str, torch.dtype], torch.Tensor] = {}
        if seed is not None:
            self.set_random_state(seed)

    # -- MONAI randomness --------------------------------------------------------------------
    def set_random_state(self, seed: Optional[int] = None, state: Optional[np.random.RandomState] = None
                         ) -> "RandElasticInPlane":
        super().set_random_state(seed, state)
        if seed is None and state is not None:
            seed = int(state.randint(0, 2**31 - 1))
        self._seed = None if seed is None else int(seed) % (2**63)
        self._generators = {}
        return self

    def randomize(self, data: Any = None) -> None:  # the fields are drawn per call, on the device
        return None

    def _generator_for(self, device: torch.device) -> Optional[torch.Generator]:
        if self._seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[key]

    def describe(self) -> Dict[str, Any]:
        """Every parameter, for provenance."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "sigma": self.sigma,
                "alpha": self.alpha, "prob": self.prob, "truncate": self.truncate, "axes_displaced": [0, 1],
                "interpolation": "linear", "padding": "reflect", "kernel": self.kernel,
                "kernel_used": self._last_kernel}

    def __repr__(self) -> str:
        return f"RandElasticInPlane(sigma={self.sigma:g}, alpha={self.alpha:g}, prob={self.prob:g})"

    # -- the operator ------------------------------------------------------------------------
    def _matrix(self, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (size, str(device), dtype)
        if key not in self._matrices:
            self._matrices[key] = gaussian_matrix(size, self.sigma, self.truncate, device, dtype)
        return self._matrices[key]

    def displacements(self, noise: torch.Tensor) -> torch.Tensor:
        """Smoothed, scaled fields from noise (N, 2, X, Y, Z) (U[-1, 1) in the reference): same shape, in voxels."""
        n, k, sx, sy, sz = noise.shape
        f = noise.reshape(n * k, sx, sy, sz)
        gx, gy, gz = (self._matrix(s, noise.device, noise.dtype) for s in (sx, sy, sz))
        f = f @ gz.T                                                   # along Z
        f = (f.transpose(2, 3) @ gy.T).transpose(2, 3)                 # along Y
        f = (gx @ f.reshape(n * k, sx, sy * sz)).reshape(n * k, sx, sy, sz)  # along X
        return (f * self.alpha).reshape(n, k, sx, sy, sz)

    def warp(self, x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
        """Sample ``x`` (N, C, X, Y, Z) at ``index + displacement`` ((N, 2, X, Y, Z), voxels along X and Y).

        Z is never displaced, so this is a bilinear warp of every (X, Y) slice: one 2D
        ``grid_sample`` over N * Z slices (4 taps per voxel instead of the 8 of a 3D sample).
        """
        n, c, sx, sy, sz = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(n * sz, c, sx, sy)
        d = displacement.permute(0, 4, 1, 2, 3).reshape(n * sz, 2, sx, sy)
        ix = torch.arange(sx, device=x.device, dtype=x.dtype).view(1, sx, 1) + d[:, 0]
        iy = torch.arange(sy, device=x.device, dtype=x.dtype).view(1, 1, sy) + d[:, 1]
        # grid_sample's last grid axis is (W, H) = (Y, X); align_corners=False: voxel i at (2i + 1) / size - 1
        grid = torch.stack([(2 * iy + 1) / sy - 1, (2 * ix + 1) / sx - 1], dim=-1)
        out = F.grid_sample(slices, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return out.reshape(n, sz, c, sx, sy).permute(0, 2, 3, 4, 1).contiguous()

    def choose_kernel(self, x: torch.Tensor) -> str:
        """``"c"`` or ``"torch"``: what a call on ``x`` runs (``kernel="c"`` on a non-CPU tensor or
        without a working compiler raises). Float16/bfloat16 CPU batches run in float32 either way."""
        if self.kernel == "torch":
            return "torch"
        if self.kernel == "c":
            if x.device.type != "cpu":
                raise elastic_kernel.KernelUnavailableError(
                    f"RandElasticInPlane(kernel='c') runs on CPU tensors, got one on {x.device}")
            elastic_kernel.load(required=True)
            return "c"
        if x.device.type != "cpu":
            return "torch"
        if elastic_kernel.available():
            return "c"
        _warn_fallback_once(elastic_kernel.unavailable_reason() or "unknown reason")
        return "torch"

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"RandElasticInPlane: expected a torch.Tensor batch (N, C, X, Y, Z), got {type(x).__name__}")
        if hasattr(x, "as_tensor"):
            x = x.as_tensor()  # MetaTensor: a plain tensor comes back (like GenesisDegrade), whichever kernel runs
        validation.check_batch(x, "RandElasticInPlane", spatial_dims=3)
        if self.check_range:
            validation.check_range(x, "RandElasticInPlane")
        generator = generator if generator is not None else self._generator_for(x.device)
        n, _, sx, sy, sz = x.shape
        compute = x if x.dtype in _C_DTYPES else x.float()
        kernel = self.choose_kernel(x)
        self._last_kernel = kernel
        if kernel == "c":
            seeds = sample_seeds(n, generator)
            apply = torch.rand((n,), generator=generator, device=x.device) < self.prob
            out = elastic_kernel.elastic(compute, seeds, sigma=self.sigma, alpha=self.alpha, truncate=self.truncate,
                                         apply=None if bool(apply.all()) else apply, threads=self.threads)
            return out.to(x.dtype)
        noise = torch.rand((n, 2, sx, sy, sz), generator=generator, device=x.device, dtype=compute.dtype) * 2 - 1
        apply = torch.rand((n,), generator=generator, device=x.device) < self.prob
        out = self.warp(compute, self.displacements(noise))
        if not bool(apply.all()):
            out = torch.where(apply.view(n, 1, 1, 1, 1), out, compute)
        return out.to(x.dtype)
