"""Speed of the Semantic Genesis / TransVW training input: in-plane elastic deformation, then exactly
one of four light degradations (METHODS.md §2; research/upstream_genesis.md §6.4).

Measures, in the same run and on the same cubes (1 channel, ``shape``, float32 in [0, 1]):

- genesis_monai, batched: :class:`~genesis_monai.transforms.RandElasticInPlane` (sigma 8,
  alpha 991; ``kernel="auto"``: the compiled CPU kernel where it builds) then
  ``GenesisDegrade.from_preset("semantic_genesis")`` on batches of ``batch_size``, the way
  :class:`~genesis_monai.engines.PrepareDegradedBatch` runs them; timed per batch, split into
  elastic and degradation;
- optionally the same with the torch elastic code (``kernel="torch"``: what runs where no C
  compiler works, and what ran before the compiled kernel existed);
- a per-sample reference-style loader written plainly below, in the way of the reference
  ``luna_loader``: per sample a fresh ``RandomState``, two ``scipy.ndimage.gaussian_filter`` of
  U[-1, 1) noise, ``map_coordinates(order=1, mode="reflect")``, then ONE of local shuffle
  (5 blocks), non-linear Bezier map (100,000-point table, ``np.interp``), in-painting (one box,
  U[0, 1) noise) or out-painting (noise outside one box), chosen with Python's ``random``.

Prints samples/s of each, the speed-ups and the elastic / degradation split; returns them as a
dict. Figures only, no assertions; timings are medians over the timed batches (after one warm-up
batch), so a busy machine shows up as noise, not as a bias of one side.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from genesis_monai.transforms import GenesisDegrade, RandElasticInPlane, elastic_kernel

__all__ = ["main", "measure", "reference_elastic", "reference_degrade", "reference_sample"]


# ----------------------------------------------------------------------------------------------
# the reference-style per-sample loader (speed yardstick; the test oracle lives in tests/)
# ----------------------------------------------------------------------------------------------

def reference_elastic(image: np.ndarray, sigma: float = 8.0, alpha: float = 991.0) -> np.ndarray:
    """In-plane elastic deformation of one cube (X, Y, Z), the reference's way (fresh entropy)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    random_state = np.random.RandomState(None)
    shape = image.shape
    dx = gaussian_filter((random_state.rand(*shape) * 2 - 1), sigma, mode="constant", cval=0) * alpha
    dy = gaussian_filter((random_state.rand(*shape) * 2 - 1), sigma, mode="constant", cval=0) * alpha
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)


def _ref_local_shuffle(x: np.ndarray, n_blocks: int = 5) -> np.ndarray:
    image_temp = x.copy()
    orig_image = x.copy()
    _, rows, cols, deps = x.shape
    for _ in range(n_blocks):
        bx = random.randint(1, rows // 10)
        by = random.randint(1, cols // 10)
        bz = random.randint(1, deps // 10)
        cx = random.randint(0, rows - bx)
        cy = random.randint(0, cols - by)
        cz = random.randint(0, deps - bz)
        window = orig_image[0, cx:cx + bx, cy:cy + by, cz:cz + bz]
        window = window.flatten()
        np.random.shuffle(window)
        image_temp[0, cx:cx + bx, cy:cy + by, cz:cz + bz] = window.reshape((bx, by, bz))
    return image_temp


def _bernstein(i: int, n: int, t: np.ndarray) -> np.ndarray:
    from math import comb

    return comb(n, i) * (t ** (n - i)) * (1 - t) ** i


def _ref_nonlinear(x: np.ndarray, n_times: int = 100_000) -> np.ndarray:
    points = [[0, 0], [random.random(), random.random()], [random.random(), random.random()], [1, 1]]
    px = np.array([p[0] for p in points])
    py = np.array([p[1] for p in points])
    t = np.linspace(0.0, 1.0, n_times)
    poly = np.array([_bernstein(i, 3, t) for i in range(4)])
    xvals, yvals = np.dot(px, poly), np.dot(py, poly)
    if random.random() < 0.5:
        xvals = np.sort(xvals)
    else:
        xvals, yvals = np.sort(xvals), np.sort(yvals)
    return np.interp(x, xvals, yvals)


def _ref_box(rows: int, cols: int, deps: int, inner: bool) -> Tuple[slice, slice, slice]:
    if inner:
        sx, sy, sz = random.randint(rows // 6, rows // 3), random.randint(cols // 6, cols // 3), \
            random.randint(deps // 6, deps // 3)
    else:
        sx = rows - random.randint(3 * rows // 7, 4 * rows // 7)
        sy = cols - random.randint(3 * cols // 7, 4 * cols // 7)
        sz = deps - random.randint(3 * deps // 7, 4 * deps // 7)
    cx, cy, cz = random.randint(3, rows - sx - 3), random.randint(3, cols - sy - 3), random.randint(3, deps - sz - 3)
    return slice(cx, cx + sx), slice(cy, cy + sy), slice(cz, cz + sz)


def _ref_inpaint(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    _, rows, cols, deps = x.shape
    bx, by, bz = _ref_box(rows, cols, deps, inner=True)
    x[:, bx, by, bz] = np.random.rand(bx.stop - bx.start, by.stop - by.start, bz.stop - bz.start) * 1.0
    return x


def _ref_outpaint(x: np.ndarray) -> np.ndarray:
    _, rows, cols, deps = x.shape
    image_temp = x.copy()
    x = np.random.rand(*x.shape) * 1.0
    bx, by, bz = _ref_box(rows, cols, deps, inner=False)
    x[:, bx, by, bz] = image_temp[:, bx, by, bz]
    return x


def reference_degrade(x: np.ndarray) -> np.ndarray:
    """Exactly one of the four light degradations of one cube (1, X, Y, Z), uniformly."""
    r = random.random()
    if r <= 0.25:
        return _ref_local_shuffle(x)
    if r <= 0.5:
        return _ref_nonlinear(x)
    if r <= 0.75:
        return _ref_inpaint(x)
    return _ref_outpaint(x)


def reference_sample(cube: np.ndarray, elastic: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """One training input the reference way: ``(degraded, target)`` of a cube (1, X, Y, Z); the
    target is the cube before the deformation."""
    x_ori = cube
    x = reference_elastic(cube[0])[None] if elastic else cube.copy()
    return reference_degrade(x), x_ori


# ----------------------------------------------------------------------------------------------

def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _time_batches(elastic: RandElasticInPlane, degrade: GenesisDegrade, batches: List[torch.Tensor],
                  generator: torch.Generator) -> Dict[str, float]:
    """Median seconds per batch of elastic, degradation and both (one untimed warm-up batch)."""
    times: Dict[str, List[float]] = {"elastic": [], "degrade": [], "pipeline": []}
    for i, x in enumerate([batches[0]] + batches):
        t0 = time.perf_counter()
        deformed = elastic(x, generator=generator)
        t1 = time.perf_counter()
        degraded, _ = degrade(deformed, generator=generator)
        t2 = time.perf_counter()
        if i == 0:
            continue
        times["elastic"].append(t1 - t0)
        times["degrade"].append(t2 - t1)
        times["pipeline"].append(t2 - t0)
    return {k: _median(v) for k, v in times.items()}


def measure(batch_size: int = 64, n_batches: int = 5, shape: Sequence[int] = (64, 64, 32),
            reference_samples: Optional[int] = None, torch_batches: Optional[int] = 2,
            threads: Optional[int] = None, seed: int = 0, reference: bool = True) -> Dict[str, float]:
    """Run the benchmark, print the figures, return them.

    Args:
        batch_size: cubes per batch (64, the reference's training batch).
        n_batches: timed batches of the genesis_monai pipeline (after one warm-up).
        shape: cube size (X, Y, Z).
        reference_samples: cubes through the reference-style loader (default ``batch_size``).
        torch_batches: timed batches with the torch elastic code (``kernel="torch"``); 0 or None
            skips that row.
        threads: ``torch.set_num_threads`` (also the C kernels' threads); default unchanged.
        seed: seeds the cubes and the generators.
        reference: run the reference-style loader (and print the speed-ups).
    """
    shape = tuple(int(s) for s in shape)
    batch_size, n_batches = int(batch_size), max(1, int(n_batches))
    if threads is not None:
        torch.set_num_threads(int(threads))
    g = torch.Generator().manual_seed(seed)
    batches = [torch.rand((batch_size, 1, *shape), generator=g) for _ in range(n_batches)]
    res: Dict[str, float] = {"batch_size": float(batch_size), "threads": float(torch.get_num_threads())}
    elastic = RandElasticInPlane()
    degrade = GenesisDegrade.from_preset("semantic_genesis")
    kernel_e = elastic.choose_kernel(batches[0])
    kernel_d = degrade.choose_kernel(batches[0])
    print(f"Semantic Genesis / TransVW training input: elastic (sigma 8, alpha 991) + one of four degradations, "
          f"batches of {batch_size} cubes {'x'.join(map(str, shape))} float32, CPU, "
          f"torch threads {torch.get_num_threads()}, median of {n_batches} batches")
    built = elastic_kernel.build_info() if kernel_e == "c" else None
    print(f"  elastic kernel: {kernel_e}" + (f" ({built})" if built else
                                             f" ({elastic_kernel.unavailable_reason()})" if kernel_e != "c" else ""))
    print(f"  degradation kernel: {kernel_d.name} ({kernel_d.reason})")

    def report(prefix: str, label: str, sec: Dict[str, float]) -> None:
        for part in ("pipeline", "elastic", "degrade"):
            res[f"{prefix}_{part}_ms_per_batch"] = 1e3 * sec[part]
            res[f"{prefix}_{part}_samples_per_s"] = batch_size / sec[part]
        print(f"  {label:44s}: {batch_size / sec['pipeline']:9.1f} samples/s "
              f"({1e3 * sec['pipeline']:.1f} ms/batch: elastic {1e3 * sec['elastic']:.1f} ms "
              f"= {batch_size / sec['elastic']:.0f} samples/s, degradation {1e3 * sec['degrade']:.1f} ms "
              f"= {batch_size / sec['degrade']:.0f} samples/s)")

    report("fast", f"genesis_monai (elastic kernel={kernel_e})", _time_batches(elastic, degrade, batches, g))
    res["samples_per_s"] = res["fast_pipeline_samples_per_s"]
    if torch_batches and kernel_e != "torch":
        slow = RandElasticInPlane(kernel="torch")
        report("torch", "genesis_monai (elastic kernel=torch)",
               _time_batches(slow, degrade, batches[: max(1, int(torch_batches))], g))

    if reference:
        n_ref = int(reference_samples) if reference_samples else batch_size
        cubes = [batches[i // batch_size][i % batch_size].numpy() for i in range(min(n_ref, batch_size * n_batches))]
        while len(cubes) < n_ref:
            cubes.append(cubes[len(cubes) % max(1, len(cubes))])
        random.seed(seed)
        np.random.seed(seed)
        reference_sample(cubes[0])  # warm-up (imports SciPy)
        t_el, t_dg = [], []
        for cube in cubes:
            t0 = time.perf_counter()
            x = reference_elastic(cube[0])[None]
            t1 = time.perf_counter()
            reference_degrade(x)
            t2 = time.perf_counter()
            t_el.append(t1 - t0)
            t_dg.append(t2 - t1)
        el, dg = sum(t_el) / n_ref, sum(t_dg) / n_ref
        res["reference_samples_per_s"] = 1.0 / (el + dg)
        res["reference_elastic_ms_per_sample"] = 1e3 * el
        res["reference_degrade_ms_per_sample"] = 1e3 * dg
        res["reference_elastic_samples_per_s"] = 1.0 / el
        res["reference_degrade_samples_per_s"] = 1.0 / dg
        print(f"  {'reference-style per-sample loader':44s}: {res['reference_samples_per_s']:9.1f} samples/s "
              f"({1e3 * (el + dg):.1f} ms/sample: elastic {1e3 * el:.1f} ms, degradation {1e3 * dg:.2f} ms; "
              f"{n_ref} samples)")
        for prefix in ("fast", "torch"):
            if f"{prefix}_pipeline_samples_per_s" not in res:
                continue
            for part in ("pipeline", "elastic", "degrade"):
                ref_key = "reference_samples_per_s" if part == "pipeline" else f"reference_{part}_samples_per_s"
                res[f"speedup_{prefix}_{part}"] = res[f"{prefix}_{part}_samples_per_s"] / res[ref_key]
            print(f"  speed-up ({prefix}): {res[f'speedup_{prefix}_pipeline']:.1f}x overall "
                  f"(elastic {res[f'speedup_{prefix}_elastic']:.1f}x, degradation "
                  f"{res[f'speedup_{prefix}_degrade']:.1f}x)")
        res["speedup"] = res["speedup_fast_pipeline"]
    return res


def main(batch_size: int = 64, n_batches: int = 5, shape: Sequence[int] = (64, 64, 32),
         reference_samples: Optional[int] = None, torch_batches: Optional[int] = 2, threads: Optional[int] = None,
         seed: int = 0, reference: bool = True) -> Dict[str, float]:
    """Print the figures (see :func:`measure`) and return them."""
    return measure(batch_size=batch_size, n_batches=n_batches, shape=shape, reference_samples=reference_samples,
                   torch_batches=torch_batches, threads=threads, seed=seed, reference=reference)


if __name__ == "__main__":
    main()
