"""Which kernel runs a degradation - the compiled CPU kernel or the vectorised torch code - and why.

This is the only place that decides. The rule, for ``kernel=``:

- ``"torch"``: always the torch kernels (any device, any float dtype).
- ``"c"``: the compiled kernel of :mod:`.cpu_kernel`, or an error saying why it cannot run
  (a torch-only option, a tensor that is not float32/float64 on the CPU, or a kernel that does
  not build).
- ``"auto"`` (default): the compiled kernel for float32/float64 CPU tensors when it builds and
  no torch-only option is set; otherwise torch. When a CPU float tensor falls back to torch only
  because the compiled kernel is unavailable, ONE warning line per process says so (the run is
  slower, and its random stream differs from the C kernel's for the same seed).

Torch-only options: ``permutations="pool"`` (a pool of shuffle permutations), ``bezier_lut_size``
(a uniform look-up table instead of the curve table) and more than
:data:`.cpu_kernel.MAX_BOX_SLOTS` painting boxes per sample.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Optional

import torch

from . import cpu_kernel

__all__ = ["KERNELS", "KernelChoice", "choose_kernel", "torch_only_option", "use_cpu_kernel"]

logger = logging.getLogger(__name__)

#: ``"auto"``: the compiled CPU kernel for float CPU tensors when it builds, else torch;
#: ``"torch"``: always the vectorised torch kernels; ``"c"``: the compiled kernel or an error.
KERNELS = ("auto", "torch", "c")

_C_DTYPES = (torch.float32, torch.float64)
_warned = False
_warn_lock = threading.Lock()


@dataclass(frozen=True)
class KernelChoice:
    """The kernel that runs (``name``: ``"c"`` or ``"torch"``) and a sentence saying why."""

    name: str
    reason: str


def torch_only_option(permutations: str = "exact", bezier_lut_size: Optional[int] = None,
                      max_boxes: int = 0) -> Optional[str]:
    """The first option the compiled kernel does not implement (as a phrase), or None."""
    if permutations != "exact":
        return f"permutations={permutations!r} (the compiled kernel draws a fresh permutation per block: " \
               f"use permutations='exact')"
    if bezier_lut_size is not None:
        return f"bezier_lut_size={bezier_lut_size!r} (the compiled kernel interpolates on the curve table: " \
               f"use lut_size=None)"
    if max_boxes > cpu_kernel.MAX_BOX_SLOTS:
        return f"{max_boxes} painting boxes (the compiled kernel paints at most {cpu_kernel.MAX_BOX_SLOTS})"
    return None


def _warn_fallback_once(reason: str) -> None:
    global _warned
    if _warned:
        return
    with _warn_lock:
        if _warned:
            return
        _warned = True
    logger.warning("genesis_monai: compiled CPU degradation kernel unavailable (%s); kernel='auto' runs the "
                   "torch kernels on CPU instead: same laws, much slower, and a different random stream than "
                   "the C kernel for the same seed", reason)


def _reset_warning_for_tests() -> None:
    global _warned
    with _warn_lock:
        _warned = False


def choose_kernel(x: torch.Tensor, kernel: str = "auto", *, permutations: str = "exact",
                  bezier_lut_size: Optional[int] = None, max_boxes: int = 0) -> KernelChoice:
    """The kernel that degrades ``x`` (any tensor) under ``kernel`` and the given options.

    Raises ValueError for an unknown ``kernel`` and for ``kernel="c"`` with a torch-only option
    or an unsuitable tensor, :class:`.cpu_kernel.KernelUnavailableError` for ``kernel="c"`` when
    the compiled kernel does not build. Builds the compiled kernel on first use.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "torch":
        return KernelChoice("torch", "kernel='torch' requested")
    option = torch_only_option(permutations, bezier_lut_size, max_boxes)
    if option is not None:
        if kernel == "c":
            raise ValueError(f"kernel='c' cannot run {option}; or pass kernel='torch'")
        return KernelChoice("torch", f"{option.split(' (')[0]} runs on the torch kernels only")
    if x.device.type != "cpu":
        if kernel == "c":
            raise ValueError(f"kernel='c' runs on float32/float64 CPU tensors, got {x.dtype} on {x.device}")
        return KernelChoice("torch", f"tensor on {x.device}")
    if x.dtype not in _C_DTYPES:
        if kernel == "c":
            raise ValueError(f"kernel='c' runs on float32/float64 CPU tensors, got {x.dtype} on {x.device}")
        return KernelChoice("torch", f"dtype {x.dtype} (the compiled kernel takes float32/float64)")
    if kernel == "c":
        cpu_kernel.load(required=True)
        return KernelChoice("c", f"kernel='c' requested: compiled CPU kernel built with {cpu_kernel.build_info()}")
    if cpu_kernel.available():
        return KernelChoice("c", f"compiled CPU kernel built with {cpu_kernel.build_info()}")
    reason = cpu_kernel.unavailable_reason()
    _warn_fallback_once(reason)
    return KernelChoice("torch", f"C kernel unavailable: {reason}")


def use_cpu_kernel(kernel: str, x: torch.Tensor) -> bool:
    """Whether ``x`` goes through the compiled CPU kernel for the given ``kernel`` choice (no
    torch-only options). Kept for callers of the earlier API; :func:`choose_kernel` also says why."""
    return choose_kernel(x, kernel).name == "c"
