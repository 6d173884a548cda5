"""Speed of the Genesis degradations: ``python -m genesis_monai benchmark transforms``.

Prints cubes/s of the batched operator (:class:`genesis_monai.transforms.GenesisDegrade`: the
compiled CPU kernel with all and with one thread, the torch kernels in both permutation modes),
milliseconds per cube of each degradation, and the same for a per-sample
NumPy pipeline written in the style of the reference implementation (Python ``random`` for the
decisions, a Python loop over shuffle blocks, a 100,000-point Bezier table with ``np.interp``).
Figures only, no assertions. Timings are medians over ``repeats`` runs after one warm-up.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from genesis_monai.transforms import GenesisDegrade, cpu_kernel
from genesis_monai.transforms import functional as F


# ----------------------------------------------------------------------------------------------
# reference-style per-sample pipeline (speed yardstick; the test oracle lives in tests/)
# ----------------------------------------------------------------------------------------------

def _ref_shuffle(x: np.ndarray, n_blocks: int = 10_000) -> np.ndarray:
    out = x.copy()
    _, X, Y, Z = x.shape
    for _ in range(n_blocks):
        bx, by, bz = random.randint(1, max(1, X // 10)), random.randint(1, max(1, Y // 10)), random.randint(1, max(1, Z // 10))
        cx, cy, cz = random.randint(0, X - bx), random.randint(0, Y - by), random.randint(0, Z - bz)
        window = x[0, cx:cx + bx, cy:cy + by, cz:cz + bz].flatten()
        out[0, cx:cx + bx, cy:cy + by, cz:cz + bz] = np.random.permutation(window).reshape(bx, by, bz)
    return out


def _ref_bezier(x: np.ndarray, n_points: int = 100_000) -> np.ndarray:
    px = [0.0, random.random(), random.random(), 1.0]
    py = [0.0, random.random(), random.random(), 1.0]
    t = np.linspace(0.0, 1.0, n_points)
    w = [t ** 3, 3 * t ** 2 * (1 - t), 3 * t * (1 - t) ** 2, (1 - t) ** 3]
    xs = sum(p * wi for p, wi in zip(px, w))
    ys = sum(p * wi for p, wi in zip(py, w))
    xs = np.sort(xs)
    if random.random() >= 0.5:
        ys = np.sort(ys)
    return np.interp(x, xs, ys).astype(x.dtype)


def _ref_box(dims: Sequence[int], inner: bool):
    if inner:
        size = [random.randint(d // 6, d // 3) for d in dims]
    else:
        size = [d - random.randint(3 * d // 7, 4 * d // 7) for d in dims]
    corner = [random.randint(3, d - s - 3) for d, s in zip(dims, size)]
    return tuple(slice(c, c + s) for c, s in zip(corner, size))


def _ref_inpaint(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    n = 5
    while n > 0 and random.random() < 0.95:
        box = _ref_box(x.shape[1:], True)
        out[(slice(None),) + box] = np.random.rand(*[s.stop - s.start for s in box])
        n -= 1
    return out


def _ref_outpaint(x: np.ndarray) -> np.ndarray:
    out = np.random.rand(*x.shape).astype(x.dtype)
    box = _ref_box(x.shape[1:], False)
    out[(slice(None),) + box] = x[(slice(None),) + box]
    n = 4
    while n > 0 and random.random() < 0.95:
        box = _ref_box(x.shape[1:], False)
        out[(slice(None),) + box] = x[(slice(None),) + box]
        n -= 1
    return out


def _ref_pair(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    for _ in range(3):
        if random.random() >= 0.4:
            break
        axis = random.randint(0, 2)
        x, y = np.flip(x, axis), np.flip(y, axis)
    x = x.copy()
    if random.random() < 0.5:
        x = _ref_shuffle(x)
    if random.random() < 0.9:
        x = _ref_bezier(x)
    if random.random() < 0.9:
        x = _ref_inpaint(x) if random.random() < 0.2 else _ref_outpaint(x)
    return x


# ----------------------------------------------------------------------------------------------

def _median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(n: int = 32, shape=(64, 64, 32), repeats: int = 3, device: str = "auto", reference: bool = True,
         threads: Optional[int] = None, seed: int = 0) -> None:
    """Print the figures: ``n`` cubes of ``shape`` (1 channel), on ``device`` ("auto": CUDA if
    available, else CPU); ``threads`` sets ``torch.set_num_threads``."""
    measure(n, shape, repeats, device, reference, threads, seed)


def measure(n: int = 32, shape=(64, 64, 32), repeats: int = 3, device: str = "auto", reference: bool = True,
            threads: Optional[int] = None, seed: int = 0) -> Dict[str, float]:
    """Like :func:`main`, and return the figures as a dict."""
    shape = tuple(int(s) for s in (shape if not isinstance(shape, int) else (shape,) * 3))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.rand((n, 1, *shape), generator=g, device=dev)
    res: Dict[str, float] = {}
    print(f"Genesis degradations: {n} cubes of {'x'.join(map(str, shape))}, device {dev}, "
          f"torch threads {torch.get_num_threads()}, median of {repeats} runs")
    auto = GenesisDegrade().choose_kernel(x)  # what the default operator runs here, and why
    print(f"  kernel='auto' runs: {auto.name} ({auto.reason})")

    configs = []
    if dev.type == "cpu":
        if cpu_kernel.available():
            configs.append(("c", "exact", torch.get_num_threads()))
            if torch.get_num_threads() > 1:
                configs.append(("c", "exact", 1))
        else:
            print(f"  compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    configs += [("torch", "exact", None), ("torch", "pool", None)]
    for kernel, perm, n_threads in configs:
        op = GenesisDegrade(permutations=perm, kernel=kernel)
        saved = torch.get_num_threads()
        if n_threads:
            torch.set_num_threads(n_threads)
        try:
            sec = _median_seconds(lambda: op(x, generator=g), repeats, sync)
        finally:
            torch.set_num_threads(saved)
        key = f"fast_{kernel}_{perm}" + (f"_t{n_threads}" if n_threads else "")
        res[key + "_cubes_per_s"] = n / sec
        label = f"kernel={kernel:5s} permutations={perm:5s}" + (f" threads={n_threads}" if n_threads else "")
        print(f"  GenesisDegrade (models_genesis, {label:42s}): {n / sec:9.1f} cubes/s ({1e3 * sec / n:.2f} ms/cube)")
    # the default operator (kernel="auto"): what users get
    res["fast_exact_cubes_per_s"] = res.get(f"fast_c_exact_t{torch.get_num_threads()}_cubes_per_s",
                                            res["fast_torch_exact_cubes_per_s"])
    res["fast_pool_cubes_per_s"] = res["fast_torch_pool_cubes_per_s"]

    kernels = (["c"] if dev.type == "cpu" and cpu_kernel.available() else []) + ["torch"]
    parts = {"flip": lambda: F.flip_pair(x, x, 0.4, "reference", g)}
    for k in kernels:
        parts.update({
            f"local shuffle ({k}, exact)": lambda k=k: F.local_pixel_shuffle(x, 10_000, g, "exact", kernel=k),
            f"bezier ({k})": lambda k=k: F.bezier_map(x, *F.sample_bezier_params(n, g, dev), kernel=k),
            f"in-painting ({k})": lambda k=k: F.in_paint(x, g, kernel=k),
            f"out-painting ({k})": lambda k=k: F.out_paint(x, g, kernel=k),
        })
    parts["local shuffle (torch, pool)"] = lambda: F.local_pixel_shuffle(x, 10_000, g, "pool", kernel="torch")
    print("  per degradation, applied to every cube (ms/cube):")
    for name, fn in parts.items():
        ms = 1e3 * _median_seconds(fn, repeats, sync) / n
        res[f"fast_ms_{name}"] = ms
        print(f"    {name:30s} {ms:8.3f}")

    if reference:
        n_ref = min(n, 16)
        cubes = [c for c in x[:n_ref].cpu().numpy()]
        random.seed(seed)
        np.random.seed(seed)
        sec = _median_seconds(lambda: [_ref_pair(c) for c in cubes], repeats, lambda: None)
        ref_rate = n_ref / sec
        res["reference_cubes_per_s"] = ref_rate
        print(f"  reference-style NumPy pipeline (per sample, {n_ref} cubes): {ref_rate:9.1f} cubes/s "
              f"({1e3 * sec / n_ref:.2f} ms/cube)")
        ref_parts = {
            "local shuffle": lambda: [_ref_shuffle(c) for c in cubes[:4]],
            "bezier": lambda: [_ref_bezier(c) for c in cubes[:4]],
            "in-painting": lambda: [_ref_inpaint(c) for c in cubes[:4]],
            "out-painting": lambda: [_ref_outpaint(c) for c in cubes[:4]],
        }
        print("  reference per degradation (ms/cube):")
        for name, fn in ref_parts.items():
            ms = 1e3 * _median_seconds(fn, repeats, lambda: None) / 4
            res[f"reference_ms_{name}"] = ms
            print(f"    {name:24s} {ms:8.3f}")
        for key in [k for k in res if k.startswith("fast_") and k.endswith("_cubes_per_s")]:
            name = key[len("fast_"): -len("_cubes_per_s")]
            if name in ("exact", "pool"):
                continue  # aliases of rows above
            res[f"speedup_{name}"] = res[key] / ref_rate
            print(f"  speed-up {name:20s}: {res[key] / ref_rate:7.1f}x")
        res["speedup_exact"] = res["fast_exact_cubes_per_s"] / ref_rate
        res["speedup_pool"] = res["fast_pool_cubes_per_s"] / ref_rate
        print(f"  speed-up of the default GenesisDegrade(): {res['speedup_exact']:.1f}x")
    return res


if __name__ == "__main__":
    main()
