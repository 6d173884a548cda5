"""The compiled CPU kernel of the in-plane elastic deformation (``csrc/elastic.c``): build, cache, load, call.

Built, cached and loaded like the degradation kernel (:mod:`.cpu_kernel`, whose cache folder,
compiler list and CPU key it reuses): the system C compiler builds it in about a second the first
time it is needed, into ``$GENESIS_MONAI_CACHE/kernels`` (or the XDG / home cache), atomically,
keyed by source, flags and CPU. ``GENESIS_MONAI_CPU_KERNEL=0`` disables it too. When it cannot be
built, :func:`available` is False, :func:`unavailable_reason` says why, and
:class:`.elastic.RandElasticInPlane` (``kernel="auto"``) falls back to its torch code.

Calls go through ctypes (the GIL is released during the call), over contiguous float32/float64
CPU tensors; ``threads`` threads work on one batch, each taking the next unprocessed sample. Each
sample's noise comes from its own stream seeded by ``seeds[i]``, so the output for given seeds does
not depend on the number of threads. The smoothing is the exact truncated Gaussian
(:func:`gaussian_weights`, SciPy's ``gaussian_filter(mode="constant")``), no approximation.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple, Union

import torch

from . import buffer_pool, cpu_kernel
from .cpu_kernel import KernelUnavailableError

__all__ = ["available", "unavailable_reason", "build_info", "load", "elastic", "noise", "gaussian_weights",
           "KernelUnavailableError"]

logger = logging.getLogger(__name__)

_ABI_VERSION = 1
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "elastic.c")
_BASE_FLAGS = ["-O3", "-std=c99", "-ffp-contract=fast", "-fno-trapping-math", "-shared", "-fPIC"]
_ERRORS = {1: "out of memory", 2: "invalid arguments"}

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_reason: Optional[str] = None
_built_with: Optional[str] = None
_tried = False
_pool: Optional[ThreadPoolExecutor] = None
_pool_key = (0, 0)  # (pid, workers): a pool does not survive fork()


def gaussian_weights(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The normalised truncated Gaussian (2R + 1,) float64, R = ``int(truncate * sigma + 0.5)``
    (SciPy's ``gaussian_filter1d`` kernel; the same as :func:`.elastic.gaussian_matrix`'s band)."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return kernel / kernel.sum()


def _build(cc: List[str], flags: List[str], out_path: str) -> Optional[str]:
    """Compile into ``out_path`` atomically; returns an error text or None."""
    tmp = f"{out_path}.{os.getpid()}.{threading.get_ident()}.tmp"
    cmd = cc + flags + [_SOURCE, "-o", tmp, "-lm"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{' '.join(cmd)}: {e}"
    if res.returncode != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        return f"{' '.join(cmd)} failed: {(res.stderr or res.stdout).strip()[-600:]}"
    os.replace(tmp, out_path)
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in ("gm_elastic_f32", "gm_elastic_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [p, p, i64, i64, i64, i64, i64, p, p, p, p, i64, ctypes.c_double, p, p]
    for name in ("gm_elastic_noise_f32", "gm_elastic_noise_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [p, i64, i64, i64, i64, p]
    lib.gm_elastic_abi_version.restype = ctypes.c_int
    lib.gm_elastic_abi_version.argtypes = []


def _load() -> Tuple[ctypes.CDLL, str]:
    if os.environ.get("GENESIS_MONAI_CPU_KERNEL", "1").strip().lower() in ("0", "false", "no", "off"):
        raise KernelUnavailableError("disabled by GENESIS_MONAI_CPU_KERNEL=0")
    if not os.path.exists(_SOURCE):
        raise KernelUnavailableError(f"kernel source missing: {_SOURCE}")
    compilers = cpu_kernel._compilers()
    if not compilers:
        raise KernelUnavailableError("no C compiler found (tried $CC, Python's CC, cc, gcc, clang)")
    with open(_SOURCE, "rb") as f:
        source = f.read()
    cache = cpu_kernel._cache_dir()
    suffix = ".dll" if sys.platform == "win32" else ".so"
    errors = []
    for cc in compilers:
        for extra in (["-march=native"], []):
            flags = _BASE_FLAGS + extra
            key = hashlib.sha256(source + repr((cc, flags, cpu_kernel._cpu_id(), sys.platform)).encode()).hexdigest()[:16]
            path = os.path.join(cache, f"elastic-{key}{suffix}")
            if not os.path.exists(path):
                err = _build(cc, flags, path)
                if err:
                    errors.append(err)
                    continue
            try:
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as e:
                errors.append(f"{path}: {e}")
                continue
            if lib.gm_elastic_abi_version() != _ABI_VERSION:
                errors.append(f"{path}: ABI version {lib.gm_elastic_abi_version()}, expected {_ABI_VERSION}")
                continue
            logger.debug("genesis_monai elastic CPU kernel: %s", path)
            return lib, " ".join(cc + flags)
    raise KernelUnavailableError("could not build the C elastic kernel: " + " | ".join(errors))


def load(required: bool = False) -> Optional[ctypes.CDLL]:
    """The loaded library, building it on first use; None (after one INFO log line) when it cannot
    be built, or :class:`KernelUnavailableError` if ``required``."""
    global _lib, _reason, _tried, _built_with
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _lib, _built_with = _load()
                except KernelUnavailableError as e:
                    _reason = str(e)
                    logger.info("genesis_monai: compiled CPU elastic kernel unavailable (%s)", _reason)
                _tried = True
    if _lib is None and required:
        raise KernelUnavailableError(f"kernel='c' needs the compiled CPU elastic kernel: {_reason}")
    return _lib


def available() -> bool:
    """Whether the compiled elastic kernel can be used (builds it on the first call)."""
    return load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`available` is False (None when it is available or not yet tried)."""
    load()
    return _reason


def build_info() -> Optional[str]:
    """The compiler command the loaded kernel was built with, or None when it is unavailable."""
    load()
    return _built_with


def _reset_for_tests() -> None:
    global _lib, _reason, _tried, _built_with
    with _lock:
        _lib, _reason, _tried, _built_with = None, None, False, None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (os.getpid(), workers)
    if _pool is None or _pool_key != key:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genesis_elastic")
        _pool_key = key
    return _pool


def _check_x(x: torch.Tensor) -> None:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"elastic CPU kernel: expected a float32/float64 CPU tensor, got {x.dtype} on {x.device}")
    if x.ndim != 5:
        raise ValueError(f"elastic CPU kernel: expected (N, C, X, Y, Z), got {tuple(x.shape)}")


def noise(seeds: torch.Tensor, spatial: Tuple[int, int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The U[-1, 1) noise (N, 2, X, Y, Z) that :func:`elastic` draws internally for ``seeds`` (N,)
    (for tests and inspection; the kernel itself never materialises it)."""
    lib = load(required=True)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"elastic CPU kernel: dtype must be float32 or float64, got {dtype}")
    seeds = seeds.to("cpu", torch.int64).contiguous()
    X, Y, Z = (int(s) for s in spatial)
    out = torch.empty((seeds.numel(), 2, X, Y, Z), dtype=dtype)
    fn = lib.gm_elastic_noise_f32 if dtype == torch.float32 else lib.gm_elastic_noise_f64
    rc = fn(seeds.data_ptr(), seeds.numel(), X, Y, Z, out.data_ptr())
    if rc:
        raise RuntimeError(f"elastic CPU kernel failed: {_ERRORS.get(rc, rc)}")
    return out


def elastic(x: torch.Tensor, seeds: Optional[torch.Tensor] = None, *, sigma: float = 8.0, alpha: float = 991.0,
            truncate: float = 4.0, apply: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None,
            return_displacement: bool = False, threads: Optional[int] = None
            ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Deform a batch in place-free fashion: ``out`` (like ``x``) [, ``displacement`` (N, 2, X, Y, Z)].

    Args:
        x: (N, C, X, Y, Z) float32/float64 CPU tensor (not modified).
        seeds: (N,) int64, one noise stream per sample (ignored when ``noise`` is given).
        sigma, alpha, truncate: the smoothing (voxels), the scale, the Gaussian radius in sigmas.
        apply: optional (N,) bool: samples with False are copied unchanged (displacement 0).
        noise: optional (N, 2, X, Y, Z) noise to smooth instead of the seeded streams (oracle tests).
        return_displacement: also return the smoothed, scaled fields (field 0 moves X, field 1 Y).
        threads: threads over samples (default ``torch.get_num_threads()``).
    """
    lib = load(required=True)
    _check_x(x)
    x = x.contiguous()
    N, C, X, Y, Z = x.shape
    if noise is not None:
        noise = noise.detach().to("cpu", x.dtype).contiguous()
        if tuple(noise.shape) != (N, 2, X, Y, Z):
            raise ValueError(f"elastic CPU kernel: noise must be {(N, 2, X, Y, Z)}, got {tuple(noise.shape)}")
    elif seeds is None:
        raise ValueError("elastic CPU kernel: give seeds or noise")
    else:
        seeds = seeds.to("cpu", torch.int64).contiguous()
        if seeds.shape != (N,):
            raise ValueError(f"elastic CPU kernel: seeds must be ({N},), got {tuple(seeds.shape)}")
    if apply is not None:
        apply = apply.to("cpu", torch.uint8).contiguous()
        if apply.shape != (N,):
            raise ValueError(f"elastic CPU kernel: apply must be ({N},), got {tuple(apply.shape)}")
    if not sigma > 0:
        raise ValueError(f"elastic CPU kernel: sigma must be > 0, got {sigma!r}")
    weights = gaussian_weights(sigma, truncate).contiguous()
    radius = (weights.numel() - 1) // 2
    out = buffer_pool.empty(x.shape, x.dtype)
    disp = torch.empty((N, 2, X, Y, Z), dtype=x.dtype) if return_displacement else None
    fn = lib.gm_elastic_f32 if x.dtype == torch.float32 else lib.gm_elastic_f64

    def ptr(t: Optional[torch.Tensor]) -> Optional[int]:
        return None if t is None else t.data_ptr()

    def run(counter: Optional[torch.Tensor]) -> int:
        return fn(ptr(x), ptr(out), N, C, X, Y, Z, ptr(noise), ptr(seeds if noise is None else None), ptr(apply),
                  ptr(weights), radius, float(alpha), ptr(disp), ptr(counter))

    workers = max(1, min(N, int(threads) if threads else torch.get_num_threads()))
    if workers == 1:
        codes = [run(None)] if N else []
    else:
        counter = torch.zeros(1, dtype=torch.int64)
        pool = _executor(workers)
        codes = [f.result() for f in [pool.submit(run, counter) for _ in range(workers)]]
    for rc in codes:
        if rc:
            raise RuntimeError(f"elastic CPU kernel failed: {_ERRORS.get(rc, rc)} (x {tuple(x.shape)})")
    return (out, disp) if return_displacement else out
