"""Pattern-generation speed: the vectorised self-discovery step 3 against the reference's loops.

``python -c "from genesis_monai.benchmarks.pattern_generation import main; main()"``
(options: n_train, n_val, shape, n_classes, n_instances, n_instances_val, crop, border, multi_res, seed,
lung_max, features)

Default workload: the reference geometry (64x64x32 crops, multi-resolution, the lung rule at 0.15, a
border scaled from 100/100/30 to the volume) on 12 + 4 volumes of 384x384x160 (about a third of a
512x512x250 LUNA16 scan; ~1.5 GB of temporary ``.npy`` files, removed afterwards), 12 classes x 8 + 2
instances. What decides the ratio: the loop reads one whole volume per instance and runs the per-voxel
rule per trial, so its cost grows with the volume size and the trials; the vectorised version reads only
the windows it cuts (memory-mapped ``.npy``) and its cost is mostly writing the output, which both share
(at the default the float64 output alone is ~300 MB). Both read from the page cache here; real volumes
read from disk widen the gap.

Both run in the same process on the same synthetic chest-like CT volumes (normalised to [0, 1] and
saved as ``.npy``, the reference's ``--is_normalized`` input) and the same features, and both write
the chunk files of the reference layout (float64, as the reference):

* vectorised: :func:`genesis_monai.data.discovery.patterns.generate_patterns` (one distance matrix,
  all trials of a reference tested at once, every neighbour volume read once per chunk, crops gathered
  and resized in batches);
* baseline: :func:`loop_pattern_generation` below, the structure of the reference
  ``pattern_generator_3D.py`` (research/upstream_genesis.md §6.3): per class a Python loop over volumes
  for the distances, a loop over trials with a loop over earlier corners and the per-voxel rule loop of
  :mod:`genesis_monai.benchmarks.reference_loop`, and per instance one ``np.load`` and one crop (and one
  resize per multi-resolution crop).

Only the random draws are shared (the reference used Python's ``random`` and an unseeded NumPy RNG): the
baseline draws references and trial corners from the same generator calls and takes the
multi-resolution boxes from :func:`~genesis_monai.data.discovery.patterns.draw_multires_boxes`, so the
two must write the same cubes; the benchmark checks that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["main", "measure", "loop_pattern_generation"]


def _ints(value: Any) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v]
    return tuple(int(v) for v in value)


def loop_pattern_generation(train_paths: Sequence[str], val_paths: Sequence[str], train_features: np.ndarray,
                            val_features: np.ndarray, save_dir: str, n_classes: int, n_instances: int,
                            n_instances_val: int, crop: Sequence[int] = (64, 64, 32),
                            border: Sequence[int] = (100, 100, 30), len_depth: int = 3, threshold: float = 0.425,
                            lung_max: float = 0.15, min_distance: float = 5.0, max_trials: int = 200,
                            multi_res: bool = True, seed: int = 0, chunk_classes: int = 50) -> List[str]:
    """The reference's pattern generator, loop for loop, on normalised ``.npy`` volumes; returns the files written.

    Fixed where the package fixes the reference (so the outputs can be compared): the ``repeated`` flag is
    reset per trial, every row of a chunk is saved, a last partial chunk is saved; random draws as
    described in the module docstring.
    """
    from genesis_monai.benchmarks.reference_loop import _rejected
    from genesis_monai.data.cubes import corner_ranges, draw_corners
    from genesis_monai.data.discovery.patterns import _class_rng, draw_multires_boxes
    from genesis_monai.data.pattern_files import pattern_file_name

    rng = np.random.default_rng(int(seed))
    cx, cy, cz = (int(c) for c in crop)
    K, Kv, C = int(n_instances), int(n_instances_val), int(n_classes)
    n_train = len(train_paths)
    ref_selected = np.zeros(n_train, dtype=bool)
    coordinates: List[np.ndarray] = []
    train_data = [np.zeros((K * C, cx, cy, cz)) for _ in range(3 if multi_res else 1)]
    train_label = np.zeros((K * C, 1))
    val_data = np.zeros((Kv * C, cx, cy, cz))
    val_label = np.zeros((Kv * C, 1))
    written: List[str] = []
    train_counter = val_counter = 0

    def random_coordinate(img: np.ndarray, corners: np.ndarray) -> tuple:
        for start_x, start_y, start_z in corners:
            repeated = False
            for c in coordinates:
                if np.linalg.norm(np.array([start_x, start_y, start_z]) - c) < min_distance:
                    repeated = True
                    break
            if repeated:
                continue
            window = img[start_x:start_x + cx, start_y:start_y + cy, start_z:start_z + cz + len_depth]
            if _rejected(window, cz, len_depth, threshold, lung_max):
                continue
            return int(start_x), int(start_y), int(start_z)
        return -1, -1, -1

    for i in range(C):
        x = y = z = -1
        while x == -1:
            free = [n for n in range(n_train) if not ref_selected[n]]
            ref_index = free[int(rng.integers(len(free)))]
            ref_selected[ref_index] = True
            ref_feature = train_features[ref_index]
            distances_train = np.zeros(n_train)
            for n in range(n_train):
                distances_train[n] = np.linalg.norm(ref_feature - train_features[n])
            train_sorted = np.argsort(distances_train, kind="stable")
            distances_val = np.zeros(len(val_paths))
            for n in range(len(val_paths)):
                distances_val[n] = np.linalg.norm(ref_feature - val_features[n])
            val_sorted = np.argsort(distances_val, kind="stable")
            ref_image = np.load(train_paths[train_sorted[0]])
            low, high = corner_ranges(ref_image.shape, crop, len_depth, border)
            x, y, z = random_coordinate(ref_image, draw_corners(rng, max_trials, low, high))
        coordinates.append(np.array([x, y, z]))
        boxes = None
        if multi_res:
            shapes = np.array([np.load(train_paths[n], mmap_mode="r").shape for n in train_sorted[:K]])
            boxes = draw_multires_boxes(_class_rng(seed, i), np.tile([x, y, z], (K, 1)), shapes, crop)
        for j in range(K):
            im = np.load(train_paths[train_sorted[j]])
            train_data[0][train_counter] = im[x:x + cx, y:y + cy, z:z + cz]
            train_label[train_counter, 0] = i
            if boxes is not None:
                for r in range(2):
                    x0, y0, z0, sx, sy = (int(v) for v in boxes[j, r])
                    patch = torch.from_numpy(np.ascontiguousarray(im[x0:x0 + sx, y0:y0 + sy, z0:z0 + cz]))
                    train_data[r + 1][train_counter] = F.interpolate(
                        patch[None, None], size=(cx, cy, cz), mode="trilinear", align_corners=False)[0, 0].numpy()
            train_counter += 1
        for j in range(Kv):
            im = np.load(val_paths[val_sorted[j]])
            val_data[val_counter] = im[x:x + cx, y:y + cy, z:z + cz]
            val_label[val_counter, 0] = i
            val_counter += 1
        if (i + 1) % chunk_classes == 0 or i == C - 1:
            part = i // chunk_classes + 1
            lo = (part - 1) * chunk_classes
            for r, arr in enumerate(train_data, start=1):
                for kind, a in (("data", arr), ("label", train_label)):
                    path = os.path.join(save_dir, pattern_file_name("train", kind, r, part))
                    np.save(path, a[lo * K:(i + 1) * K])
                    written.append(path)
            for kind, a in (("data", val_data), ("label", val_label)):
                path = os.path.join(save_dir, pattern_file_name("val", kind, 1, part))
                np.save(path, a[lo * Kv:(i + 1) * Kv])
                written.append(path)
    return written


def _write_volumes(folder: str, n: int, shape: Sequence[int], seed: int, distinct: int = 4) -> List[str]:
    """``n`` normalised volumes as ``.npy``: ``distinct`` synthetic chest CTs, the others shifted and mirrored
    copies of them (a 384x384x160 phantom takes ~2 s to make; a copy ~0.1 s)."""
    from genesis_monai.benchmarks.cubes import synthetic_chest_ct
    from genesis_monai.data.intensity import normalise_intensity

    rng = np.random.default_rng(seed)
    bases = [normalise_intensity(synthetic_chest_ct(shape, seed + i), -1000.0, 1000.0)
             for i in range(min(int(distinct), int(n)))]
    paths = []
    for i in range(int(n)):
        vol = bases[i % len(bases)]
        if i >= len(bases):
            shift = rng.integers(-shape[0] // 16, shape[0] // 16 + 1, 2)
            vol = np.roll(vol, tuple(int(s) for s in shift), axis=(0, 1))[:, ::-1 if i % 2 else 1]
        path = os.path.join(folder, f"volume_{i:03d}.npy")
        np.save(path, np.ascontiguousarray(vol))
        paths.append(path)
    return paths


def _settle() -> None:
    """Flush what earlier steps wrote, so that no run pays for another's dirty pages (write-back throttling)."""
    if hasattr(os, "sync"):
        os.sync()


def measure(n_train: int = 12, n_val: int = 4, shape: Any = (384, 384, 160), n_classes: int = 12,
            n_instances: int = 8, n_instances_val: int = 2, crop: Any = (64, 64, 32), border: Any = (75, 75, 16),
            multi_res: bool = True, seed: int = 0, lung_max: float = 0.15, features: int = 512,
            keep: bool = False) -> Dict[str, Any]:
    """Print and return the figures: seconds, classes/s and cubes/s of each version, speed-up, equal outputs."""
    from genesis_monai.data.discovery.patterns import generate_patterns
    from genesis_monai.data.discovery.volumes import VolumeSet
    from genesis_monai.data.extraction_options import ExtractionOptions

    shape, crop, border = _ints(shape), _ints(crop), _ints(border)
    root = tempfile.mkdtemp(prefix="pattern_bench_")
    try:
        vol_dir = os.path.join(root, "volumes")
        os.makedirs(vol_dir)
        paths = _write_volumes(vol_dir, int(n_train) + int(n_val), shape, seed)
        train_paths, val_paths = paths[:n_train], paths[n_train:]
        rng = np.random.default_rng(seed)
        f_train = rng.normal(size=(n_train, int(features))).astype(np.float32)
        f_val = rng.normal(size=(n_val, int(features))).astype(np.float32)
        opts = ExtractionOptions(border=border, lung_max=lung_max)
        kw = dict(n_classes=n_classes, n_instances=n_instances, n_instances_val=n_instances_val)
        cubes = n_classes * (n_instances * (3 if multi_res else 1) + n_instances_val)
        print(f"pattern generation: {n_train} + {n_val} synthetic CT volumes {shape} (normalised .npy), "
              f"{n_classes} classes x {n_instances} + {n_instances_val} instances, crop {crop}, "
              f"multi_res {bool(multi_res)}, border {border}, lung rule {lung_max}, {features}-d features; "
              f"{cubes} cubes; torch threads {torch.get_num_threads()}")

        times: Dict[str, float] = {}
        for dtype in ("float32", "float64"):
            _settle()
            t0 = time.perf_counter()
            generate_patterns(VolumeSet(train_paths, opts, is_normalized=True),
                              VolumeSet(val_paths, opts, is_normalized=True, name="validation"), f_train, f_val,
                              os.path.join(root, dtype), crop=crop, multi_res=multi_res, options=opts, seed=seed,
                              dtype=dtype, progress=False, **kw)
            times[dtype] = time.perf_counter() - t0
            what = "its default" if dtype == "float32" else "as the reference"
            print(f"  vectorised, {dtype} files ({what}): {times[dtype]:8.2f} s  {n_classes / times[dtype]:7.2f} "
                  f"classes/s  {cubes / times[dtype]:8.1f} cubes/s")

        loop_dir = os.path.join(root, "loop")
        os.makedirs(loop_dir)
        _settle()
        t0 = time.perf_counter()
        files = loop_pattern_generation(train_paths, val_paths, f_train, f_val, loop_dir, crop=crop, border=border,
                                        lung_max=lung_max, multi_res=multi_res, seed=seed, **kw)
        t_loop = time.perf_counter() - t0
        print(f"  reference loop, float64 files:       {t_loop:8.2f} s  {n_classes / t_loop:7.2f} classes/s  "
              f"{cubes / t_loop:8.1f} cubes/s")
        same = True
        for path in files:
            a = np.load(path)
            for dtype in times:
                b = np.load(os.path.join(root, dtype, os.path.basename(path)))
                same &= a.shape == b.shape and bool(np.allclose(a, b, atol=1e-6))
        speedup = {dtype: t_loop / t for dtype, t in times.items()}
        print(f"  speed-up over the loop: {speedup['float32']:.1f}x (float32 files), {speedup['float64']:.1f}x "
              f"(float64 files); same cubes and labels: {same}")
        return {"vectorised_s": times, "loop_s": t_loop, "speedup": speedup, "identical": same, "cubes": cubes,
                "classes": n_classes, "threads": torch.get_num_threads()}
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(**options: Any) -> Dict[str, Any]:
    """Print the figures of :func:`measure` (its keyword options)."""
    return measure(**options)
