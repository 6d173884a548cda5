"""The compiled CPU kernel of the Genesis degradations (``csrc/degrade.c``): build, cache, load, call.

The C source has no Python or torch headers, so the system C compiler builds it in well under a
second the first time it is needed; the shared library is cached per source, compiler flags and
CPU (``$GENESIS_MONAI_CACHE``, else ``$XDG_CACHE_HOME/genesis_monai``, else
``~/.cache/genesis_monai``; a temporary folder if that is not writable), written atomically so
that parallel processes (DDP ranks, DataLoader workers) can race safely.

When no compiler works (or ``GENESIS_MONAI_CPU_KERNEL=0``), :func:`available` is False and
:func:`unavailable_reason` says why; :mod:`.kernel_choice` then routes ``kernel="auto"`` calls to
the vectorised torch kernels (same laws, slower) and logs that once, as a WARNING.
``kernel="c"`` asks for this kernel explicitly and raises with the reason. :func:`build_info`
names the compiler command the loaded library was built with.

Calls go through ctypes (the GIL is released during the call), over contiguous float32/float64
CPU tensors; ``threads`` threads work on one batch, each taking the next unprocessed sample. Every sample has
its own random stream seeded from the caller's torch Generator, so the output of a given seed
does not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import torch

from . import buffer_pool

__all__ = ["available", "unavailable_reason", "build_info", "load", "degrade", "outside_unit_range",
           "FLIP_C", "FLIP_X", "FLIP_Y", "FLIP_Z", "SHUFFLE", "BEZIER", "INPAINT", "OUTPAINT", "MAX_BOX_SLOTS",
           "KernelUnavailableError"]

logger = logging.getLogger(__name__)

# per-sample flag bits, as in csrc/degrade.c
FLIP_C, FLIP_X, FLIP_Y, FLIP_Z = 1, 2, 4, 8
SHUFFLE, BEZIER, INPAINT, OUTPAINT = 16, 32, 64, 128
MAX_BOX_SLOTS = 64  # out-painting keeps one bit per box in a uint64 mask

_ABI_VERSION = 4
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "degrade.c")
_BASE_FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC"]
_ERRORS = {1: "out of memory", 2: "invalid arguments"}


class KernelUnavailableError(RuntimeError):
    """``backend="c"`` was asked for, but the compiled kernel cannot be built or loaded."""


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_reason: Optional[str] = None  # why the kernel is unavailable (None: not tried yet or loaded)
_built_with: Optional[str] = None  # compiler command of the loaded library, e.g. "gcc -O3 ... -march=native"
_tried = False
_pool: Optional[ThreadPoolExecutor] = None
_pool_key = (0, 0)  # (pid, workers): a pool does not survive fork()


def _cache_dir() -> str:
    root = os.environ.get("GENESIS_MONAI_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "genesis_monai")
    path = os.path.join(root, "kernels")
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
        probe.close()
        return path
    except OSError:
        path = os.path.join(tempfile.gettempdir(), f"genesis_monai_kernels_{os.getuid() if hasattr(os, 'getuid') else 0}")
        os.makedirs(path, exist_ok=True)
        return path


def _compilers() -> List[List[str]]:
    found = []
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if not cand:
            continue
        argv = cand.split()
        if shutil.which(argv[0]) and argv not in found:
            found.append(argv)
    return found


def _cpu_id() -> str:
    """Tells CPUs apart so that a ``-march=native`` build cached on a shared home folder is never
    loaded on a node with an older instruction set."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    text += line
                if line.strip() == "":
                    break  # the first processor is enough
    except OSError:
        pass
    return text


def _build(cc: List[str], flags: List[str], out_path: str) -> Optional[str]:
    """Compile into ``out_path`` atomically; returns an error text or None."""
    tmp = f"{out_path}.{os.getpid()}.{threading.get_ident()}.tmp"
    cmd = cc + flags + [_SOURCE, "-o", tmp]
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
    for name in ("gm_degrade_f32", "gm_degrade_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [p, p, p, i64, i64, i64, i64, i64, p, i64, p, p, i64, p, p, p, i64, p, p]
    for name in ("gm_outside_unit_f32", "gm_outside_unit_f64"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [p, i64]
    lib.gm_abi_version.restype = ctypes.c_int
    lib.gm_abi_version.argtypes = []


def _load() -> Tuple[ctypes.CDLL, str]:
    if os.environ.get("GENESIS_MONAI_CPU_KERNEL", "1").strip().lower() in ("0", "false", "no", "off"):
        raise KernelUnavailableError("disabled by GENESIS_MONAI_CPU_KERNEL=0")
    if not os.path.exists(_SOURCE):
        raise KernelUnavailableError(f"kernel source missing: {_SOURCE}")
    compilers = _compilers()
    if not compilers:
        raise KernelUnavailableError("no C compiler found (tried $CC, Python's CC, cc, gcc, clang)")
    with open(_SOURCE, "rb") as f:
        source = f.read()
    cache = _cache_dir()
    suffix = ".dll" if sys.platform == "win32" else ".so"
    errors = []
    for cc in compilers:
        # -march=native first (the library is built for, and keyed by, this CPU), then portable
        for extra in (["-march=native"], []):
            flags = _BASE_FLAGS + extra
            key = hashlib.sha256(source + repr((cc, flags, _cpu_id(), sys.platform)).encode()).hexdigest()[:16]
            path = os.path.join(cache, f"degrade-{key}{suffix}")
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
            if lib.gm_abi_version() != _ABI_VERSION:
                errors.append(f"{path}: ABI version {lib.gm_abi_version()}, expected {_ABI_VERSION}")
                continue
            logger.debug("genesis_monai CPU kernel: %s", path)
            return lib, " ".join(cc + flags)
    raise KernelUnavailableError("could not build the C kernel: " + " | ".join(errors))


def load(required: bool = False) -> Optional[ctypes.CDLL]:
    """The loaded kernel library, building it on first use; None (after one INFO log line with
    the reason) when it cannot be built, or :class:`KernelUnavailableError` if ``required``."""
    global _lib, _reason, _tried, _built_with
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _lib, _built_with = _load()
                except KernelUnavailableError as e:
                    _reason = str(e)
                    # INFO, not WARNING: kernel_choice warns once where a call actually falls back
                    logger.info("genesis_monai: compiled CPU degradation kernel unavailable (%s)", _reason)
                _tried = True
    if _lib is None and required:
        raise KernelUnavailableError(f"kernel='c' needs the compiled CPU kernel: {_reason}")
    return _lib


def available() -> bool:
    """Whether the compiled CPU kernel can be used (builds it on the first call)."""
    return load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`available` is False (None when it is available or not yet tried)."""
    load()
    return _reason


def build_info() -> Optional[str]:
    """The compiler command the loaded kernel was built with (e.g. ``"gcc -O3 -std=c99 -shared
    -fPIC -march=native"``), or None when it is unavailable. Builds it on the first call."""
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
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genesis_degrade")
        _pool_key = key
    return _pool


def degrade(x: torch.Tensor, flags: torch.Tensor, seeds: torch.Tensor, *, target: bool = False,
            n_blocks: int = 0, points: Optional[torch.Tensor] = None, invert: Optional[torch.Tensor] = None,
            n_points: int = 4096,
            box_count: Optional[torch.Tensor] = None, box_corner: Optional[torch.Tensor] = None,
            box_size: Optional[torch.Tensor] = None, threads: Optional[int] = None):
    """Run the kernel over a batch.

    Args:
        x: (N, C, X, Y[, Z]) float32/float64 CPU tensor (not modified).
        flags: (N,) per-sample bits (``FLIP_*``, ``SHUFFLE``, ``BEZIER``, ``INPAINT``, ``OUTPAINT``).
        seeds: (N,) int64, one random stream per sample.
        target: also return the flipped input.
        n_blocks: local-shuffle blocks per sample.
        points, invert: (N, 4) Bezier control points and (N,) inversion flags
            (:func:`.sampling.sample_bezier_params`), needed when any sample has ``BEZIER``;
            the curve is tabulated at ``n_points`` samples of t (as ``bezier_tables``).
        box_count (N,), box_corner / box_size (N, slots, n_spatial) long: boxes for painting.
        threads: threads over samples (default ``torch.get_num_threads()``).
    Returns:
        ``out`` or ``(out, target)``, new tensors like ``x`` (memory from :mod:`.buffer_pool`,
        recycled only after these tensors are gone).
    """
    lib = load(required=True)
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"CPU kernel: expected a float32/float64 CPU tensor, got {x.dtype} on {x.device}")
    if x.ndim not in (4, 5):
        raise ValueError(f"CPU kernel: expected (N, C, X, Y[, Z]), got {tuple(x.shape)}")
    x = x.contiguous()
    N, C = x.shape[:2]
    X, Y = x.shape[2], x.shape[3]
    Z = x.shape[4] if x.ndim == 5 else 1
    out = buffer_pool.empty(x.shape, x.dtype)
    tgt = buffer_pool.empty(x.shape, x.dtype) if target else None
    flags = flags.to(torch.uint8).contiguous()
    seeds = seeds.to(torch.int64).contiguous()
    if flags.shape != (N,) or seeds.shape != (N,):
        raise ValueError(f"CPU kernel: flags and seeds must be ({N},), got {tuple(flags.shape)}, {tuple(seeds.shape)}")
    T = 0
    if points is not None:
        points = points.detach().to("cpu", torch.float64).contiguous()
        invert = invert.detach().to("cpu", torch.uint8).contiguous()
        T = int(n_points)
        if points.shape != (N, 4) or invert.shape != (N,) or T < 2:
            raise ValueError(f"CPU kernel: Bezier points must be ({N}, 4), invert ({N},), n_points >= 2; got "
                             f"{tuple(points.shape)}, {tuple(invert.shape)}, {T}")
    elif bool((flags & BEZIER).any()):
        raise ValueError("CPU kernel: BEZIER flag set but no Bezier points given")
    slots = 0
    if box_count is not None:
        slots = box_corner.shape[1]
        if slots > MAX_BOX_SLOTS:
            raise ValueError(f"CPU kernel: at most {MAX_BOX_SLOTS} boxes per sample, got {slots}")
        pad = 3 - box_corner.shape[2]  # 2-D boxes get a depth axis: corner 0, size 1
        box_count = box_count.to(torch.int64).contiguous()
        box_corner = torch.nn.functional.pad(box_corner.to(torch.int64), (0, pad), value=0).contiguous()
        box_size = torch.nn.functional.pad(box_size.to(torch.int64), (0, pad), value=1).contiguous()
        # the C code trusts the boxes: every active box must lie inside the sample
        active = torch.arange(slots).unsqueeze(0) < box_count.clamp(max=slots).unsqueeze(1)  # (N, slots)
        dims = torch.tensor([X, Y, Z])
        inside = (box_corner >= 0) & (box_size >= 0) & (box_corner + box_size <= dims)
        if not bool(inside.all(2)[active].all()):
            raise ValueError(f"CPU kernel: a painting box lies outside the sample {(X, Y, Z)}")
    elif bool((flags & (INPAINT | OUTPAINT)).any()):
        raise ValueError("CPU kernel: painting flag set but no boxes given")
    fn = lib.gm_degrade_f32 if x.dtype == torch.float32 else lib.gm_degrade_f64

    def run(counter: Optional[torch.Tensor]) -> int:
        def ptr(t: Optional[torch.Tensor]) -> Optional[int]:
            return None if t is None else t.data_ptr()
        return fn(ptr(x), ptr(out), ptr(tgt), N, C, X, Y, Z, ptr(flags), int(n_blocks), ptr(points), ptr(invert), T,
                  ptr(box_count), ptr(box_corner), ptr(box_size), slots, ptr(seeds), ptr(counter))

    workers = max(1, min(N, int(threads) if threads else torch.get_num_threads()))
    if workers == 1:
        codes = [run(None)] if N else []
    else:
        # every thread takes the next unprocessed sample from a shared counter (dynamic balance)
        counter = torch.zeros(1, dtype=torch.int64)
        pool = _executor(workers)
        codes = [f.result() for f in [pool.submit(run, counter) for _ in range(workers)]]
    for rc in codes:
        if rc:
            raise RuntimeError(f"CPU degradation kernel failed: {_ERRORS.get(rc, rc)} (x {tuple(x.shape)})")
    return (out, tgt) if target else out


_RANGE_SPLIT = 1 << 23  # values per thread below which one thread checks it all (measured: 2 threads
# lose to 1 on 4M floats, the pass is ~0.4 ms)


def outside_unit_range(x: torch.Tensor, threads: Optional[int] = None) -> bool:
    """Whether some value of ``x`` (a contiguous float32/float64 CPU tensor) lies outside [0, 1]
    or is NaN: one vectorised pass, no copy.

    Why not ``torch.aminmax``: it is as fast, but its OpenMP threads go on spinning after it
    returns and slow the degradation threads started right after it (see ``csrc/degrade.c``).
    Tensors of several million values are split over ``threads`` threads (default
    ``torch.get_num_threads()``).
    """
    lib = load(required=True)
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not x.is_contiguous():
        raise TypeError(f"CPU kernel: expected a contiguous float32/float64 CPU tensor, got {x.dtype} on {x.device}")
    fn = lib.gm_outside_unit_f32 if x.dtype == torch.float32 else lib.gm_outside_unit_f64
    n = x.numel()
    workers = max(1, min(int(threads) if threads else torch.get_num_threads(), n // _RANGE_SPLIT))
    if workers == 1:
        return bool(fn(x.data_ptr(), n))
    bounds = [n * k // workers for k in range(workers + 1)]
    base, item = x.data_ptr(), x.element_size()
    pool = _executor(workers)
    futures = [pool.submit(fn, base + bounds[k] * item, bounds[k + 1] - bounds[k]) for k in range(workers)]
    return any(bool(f.result()) for f in futures)
