"""Helpers for tests that run bundle configs on tiny synthetic data."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Sequence

import nibabel as nib
import numpy as np

BUNDLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundles")


def write_tiny_segmentation_set(root: str, n: int = 4, shape: Sequence[int] = (24, 24, 16), seed: int = 0) -> str:
    """n CT-like volumes (HU) with one bright cube each as the label, a Decathlon dataset.json; returns root."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(root, "labelsTr"), exist_ok=True)
    entries = []
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    for i in range(n):
        img = rng.normal(-800, 30, size=shape).astype(np.int16)
        lab = np.zeros(shape, np.uint8)
        c = [int(rng.integers(4, s - 8)) for s in shape]
        lab[c[0]:c[0] + 5, c[1]:c[1] + 5, c[2]:c[2] + 4] = 1
        img[lab > 0] = 60
        nib.save(nib.Nifti1Image(img, affine), os.path.join(root, "imagesTr", f"case_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), os.path.join(root, "labelsTr", f"case_{i}.nii.gz"))
        entries.append({"image": f"imagesTr/case_{i}.nii.gz", "label": f"labelsTr/case_{i}.nii.gz"})
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"training": entries[:-2], "validation": entries[-2:-1], "test": entries[-1:]}, f)
    return root


def workflow(bundle: str, configs: Sequence[str], workflow_type: str, **overrides: Any):
    from monai.bundle import ConfigWorkflow

    files = [os.path.join(BUNDLES_DIR, bundle, "configs", c) for c in configs]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=os.path.join(BUNDLES_DIR, bundle, "configs", "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **overrides,
    )


def run_workflow(wf) -> None:
    wf.initialize()
    wf.run()
    wf.finalize()


def cpu_overrides(**extra: Any) -> Dict[str, Any]:
    return {"device": "$torch.device('cpu')", "num_workers": 0, **extra}


def copy_bundle(bundle: str, dst) -> str:
    """Copy bundle ``bundle`` to ``dst`` without run outputs or weights; ``dst/models`` exists afterwards."""
    import shutil

    shutil.copytree(os.path.join(BUNDLES_DIR, bundle), dst, ignore=shutil.ignore_patterns("eval", "runs", "*.pt"))
    os.makedirs(os.path.join(str(dst), "models"), exist_ok=True)
    return str(dst)


def pretrains_on_patterns(bundle: str) -> bool:
    """Whether ``bundle``'s training.json reads discovered patterns (Semantic Genesis / TransVW) instead of cubes."""
    with open(os.path.join(BUNDLES_DIR, bundle, "configs", "training.json")) as f:
        return "resolve_pattern_data" in f.read()


def pretrains_on_head_ct(bundle: str) -> bool:
    """Whether ``bundle``'s training.json trains on labeled head-CT volumes (SMART-Net's supervised upstream)."""
    with open(os.path.join(BUNDLES_DIR, bundle, "configs", "training.json")) as f:
        return "head_ct_splits" in f.read()


def write_tiny_pretraining_data(bundle: str, root: str, shape: Sequence[int] = (16, 16, 8), n: int = 8,
                                seed: int = 0) -> Dict[str, Any]:
    """Tiny self-supervised training data in the layout ``bundle``'s training.json reads; returns its overrides.

    Cube bundles get reference-named cube files (folds 0 and 5); pattern bundles get 3 pattern classes
    in the reference pattern layout (``cls_classes`` 3); head-CT bundles (SMART-Net) small head-CT
    phantoms with masks, read at 32x32 slices. Returns ``{"dataset_dir": root, "cube_shape": shape,
    ...}``, the ids a test passes to the workflow.
    """
    if pretrains_on_head_ct(bundle):  # small head-CT phantoms with hemorrhage masks, 32x32 slices
        from genesis_monai.data.demo import write_demo_dataset

        write_demo_dataset(root, phantom="head_ct", n_volumes=max(6, n // 2), shape=(48, 48, 12), seed=seed)
        return {"dataset_dir": root, "slice_size": 32}
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    shape = [int(s) for s in shape]
    coarse = [max(1, s // 4) for s in shape]

    def blobs(k: int) -> np.ndarray:  # smooth blobs: something a tiny network can learn to restore
        return np.kron(rng.random((k, *coarse), dtype=np.float32), np.ones((1, 4, 4, 4), np.float32))[
            :, :shape[0], :shape[1], :shape[2]]

    if not pretrains_on_patterns(bundle):
        for fold in (0, 5):
            np.save(os.path.join(root, f"bat_{n}_s_64x64x32_{fold}.npy"), blobs(n))
        return {"dataset_dir": root, "cube_shape": shape}
    from genesis_monai.data import write_pattern_files

    classes = 3
    for split, k in (("train", n), ("val", max(2, n // 4))):
        cubes = blobs(classes * k)
        for c in range(classes):  # each class: a bright box at its own place
            cubes[c * k:(c + 1) * k, c * shape[0] // 4:c * shape[0] // 4 + shape[0] // 4 + 1] += 0.5
        write_pattern_files(root, split, 1, 1, np.clip(cubes, 0, 1), np.repeat(np.arange(classes), k))
    return {"dataset_dir": root, "cube_shape": shape, "cls_classes": classes}
