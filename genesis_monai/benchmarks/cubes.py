"""Cube-extraction speed: the vectorised extractor against the reference's per-cube rejection loop.

``python -m genesis_monai benchmark cubes [--shape 512,512,200] [--volumes 3] [--baseline_volumes 1]``

Both run on the same synthetic chest-like CT volumes (air, body, two lungs, noise; integer HU)
with the reference settings (64x64x(32+3) crops, border 100/100/30, -150 HU, 0.15, scale 32) and
the same candidate corners, so the figures compare like with like and the cubes must be equal.
The baseline is :func:`genesis_monai.benchmarks.reference_loop.reference_loop_extract`.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Sequence

import numpy as np

__all__ = ["main", "measure", "synthetic_chest_ct"]


def synthetic_chest_ct(shape: Sequence[int] = (512, 512, 200), seed: int = 0) -> np.ndarray:
    """A chest-like CT volume (X, Y, Z) int16 in HU: air outside, soft-tissue body, two lungs, noise.

    Enough structure that the lung rule accepts some candidates and rejects others.
    """
    rng = np.random.default_rng(seed)
    X, Y, Z = (int(s) for s in shape)
    x = np.linspace(-1, 1, X)[:, None, None]
    y = np.linspace(-1, 1, Y)[None, :, None]
    z = np.linspace(-1, 1, Z)[None, None, :]
    vol = np.full((X, Y, Z), -1000.0, dtype=np.float32)
    body = (x / 0.92) ** 2 + (y / 0.75) ** 2 <= 1.0
    vol[np.broadcast_to(body, vol.shape)] = 40.0
    for cx in (-0.42, 0.42):
        lung = ((x - cx) / 0.38) ** 2 + (y / 0.6) ** 2 + (z / 1.3) ** 2 <= 1.0
        vol[lung] = -850.0
    # vessels / nodules: small dense blobs inside the lungs
    for _ in range(60):
        c = rng.uniform(-0.7, 0.7, 3)
        r = rng.uniform(0.02, 0.08)
        lo = [max(0, int((c[i] - r + 1) / 2 * n)) for i, n in enumerate((X, Y, Z))]
        hi = [min(n, int((c[i] + r + 1) / 2 * n) + 2) for i, n in enumerate((X, Y, Z))]
        sub = ((x[lo[0]:hi[0]] - c[0]) ** 2 + (y[:, lo[1]:hi[1]] - c[1]) ** 2
               + (z[:, :, lo[2]:hi[2]] - c[2]) ** 2 <= r * r)
        vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][sub] = 30.0
    vol += rng.normal(0.0, 25.0, vol.shape).astype(np.float32)
    return np.clip(np.rint(vol), -1024, 3071).astype(np.int16)


def main(**options: Any) -> None:
    """Print the figures of :func:`measure` (options: shape, volumes, baseline_volumes, scale, repeats, seed,
    methods, lung_max)."""
    if "oracle_volumes" in options:  # the option's earlier name
        options["baseline_volumes"] = options.pop("oracle_volumes")
    measure(**options)


def measure(shape: Any = (512, 512, 200), volumes: int = 3, baseline_volumes: int = 1, scale: int = 32,
            repeats: int = 3, seed: int = 0, methods: Any = ("auto", "gather", "table"),
            lung_max: float = 0.15) -> Dict[str, Any]:
    """Print and return figures: volumes/s, cubes/s and candidates/s of each method and of the baseline loop."""
    from genesis_monai.benchmarks.reference_loop import reference_loop_extract
    from genesis_monai.data.cubes import corner_ranges, draw_corners, extract_cubes

    if isinstance(shape, str):
        shape = tuple(int(s) for s in shape.split(","))
    if isinstance(methods, str):
        methods = tuple(m for m in methods.split(",") if m)
    shape = tuple(int(s) for s in shape)
    vols = [synthetic_chest_ct(shape, seed + i) for i in range(int(volumes))]
    kw = dict(scale=scale, modality="ct", lung_max=float(lung_max))
    results: Dict[str, Any] = {"shape": shape, "volumes": len(vols), "scale": scale}
    print(f"cube extraction, {len(vols)} synthetic CT volumes {shape}, scale {scale}, lung_max {lung_max}, "
          "reference geometry (64x64x(32+3), border 100/100/30, -150 HU)")
    counts = []
    for method in methods:
        best = float("inf")
        for _ in range(int(repeats)):
            t0 = time.perf_counter()
            n = 0
            tries = 0
            for i, v in enumerate(vols):
                cubes, info = extract_cubes(v, seed=seed + i, method=method, return_info=True, **kw)
                n += len(cubes)
                tries += info["tries"]
            best = min(best, time.perf_counter() - t0)
        counts.append(n)
        results[method] = {"seconds": best, "volumes_per_s": len(vols) / best, "cubes_per_s": n / best,
                           "cubes": n, "candidates": tries}
        print(f"  vectorised [{method:>6}]: {len(vols) / best:8.2f} volumes/s  {n / best:9.1f} cubes/s  "
              f"{tries / best:9.1f} candidates/s  ({n} cubes, {tries} candidates, best of {repeats})")

    nv = int(baseline_volumes)
    if nv < 1:
        return results
    t_base = 0.0
    n_base = 0
    cand_base = 0
    identical = True
    for i, v in enumerate(vols[:nv]):
        cubes, info = extract_cubes(v, seed=seed + i, method="gather", return_info=True, **kw)
        low, high = corner_ranges(v.shape)
        corners = draw_corners(np.random.default_rng(seed + i), 50 * scale, low, high)  # same stream as seed + i
        t0 = time.perf_counter()
        ref, taken = reference_loop_extract(v, corners, scale, lung_max=float(lung_max))
        t_base += time.perf_counter() - t0
        n_base += len(ref)
        cand_base += (taken[-1] + 1) if len(taken) == scale else len(corners)
        identical &= ref.shape == cubes.shape and bool(np.allclose(ref, cubes, atol=1e-6))
    ref_vps = nv / t_base
    results["baseline"] = {"seconds": t_base, "volumes_per_s": ref_vps, "cubes_per_s": n_base / t_base,
                           "cubes": n_base, "candidates": cand_base, "identical_cubes": identical}
    print(f"  reference loop (per-voxel): {ref_vps:8.4f} volumes/s  {n_base / t_base:9.2f} cubes/s  "
          f"{cand_base / t_base:9.2f} candidates/s  "
          f"({n_base} cubes, {cand_base} candidates, {nv} volume(s), {t_base:.1f} s); "
          f"same cubes as vectorised: {identical}")
    for method in methods:
        results[method]["speedup"] = results[method]["volumes_per_s"] / ref_vps
        print(f"  speed-up [{method:>6}] over the reference loop: {results[method]['speedup']:.0f}x (volumes/s)")
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
