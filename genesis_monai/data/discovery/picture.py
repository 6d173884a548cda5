"""A picture of discovered patterns: one row per class, one column per instance, middle axial slice of each crop.

Instances of a good class look alike (the same anatomy at the same place in similar patients); with
the features of an untrained network they look alike only in coarse layout. Same style as
:mod:`genesis_monai.viz` (Agg canvas, grey [0, 1], X to the right and Y up, written atomically).
"""

from __future__ import annotations

import os
from typing import Any, List, Tuple, Union

import numpy as np

from genesis_monai.data.pattern_files import find_pattern_files
from genesis_monai.viz import _axial, _figure, _save

__all__ = ["save_class_grid", "PICTURE_FILE"]

#: the picture discover writes into its output folder
PICTURE_FILE = "pattern_classes.png"


def _from_folder(folder: str, resolution: int) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    files = find_pattern_files(folder, resolutions=[resolution])["training"]
    if not files:
        raise FileNotFoundError(f"no training pattern files of resolution {resolution} in {folder}")
    cubes = [np.load(r["image"], mmap_mode="r") for r in files]
    labels = [np.load(r["label"]).reshape(-1).astype(np.int64) for r in files]
    return cubes, labels


def save_class_grid(source: Union[str, Tuple[Any, Any]], path: str, n_classes: int = 8, n_instances: int = 8,
                    resolution: int = 1) -> str:
    """Save a grid of pattern crops as PNG (atomically); returns the absolute path.

    Args:
        source: a discovery output folder (its training files of ``resolution`` are read memory-mapped), or
            ``(cubes, labels)``: cubes (n, X, Y, Z) in [0, 1] and labels (n,) or (n, 1) class indices.
        path: the PNG to write (parent folders are created).
        n_classes: rows: the first ``n_classes`` classes present.
        n_instances: columns: the first ``n_instances`` instances of each class (instance 0 is the class's
            reference volume).
        resolution: which training resolution to show when ``source`` is a folder.
    """
    if isinstance(source, (str, os.PathLike)):
        cube_list, label_list = _from_folder(os.fspath(source), int(resolution))
    else:
        cubes, labels = source
        cube_list, label_list = [np.asarray(cubes)], [np.asarray(labels).reshape(-1).astype(np.int64)]
    for c, lab in zip(cube_list, label_list):
        if c.ndim != 4 or len(c) != len(lab):
            raise ValueError(f"expected cubes (n, X, Y, Z) with n labels, got {c.shape} and {len(lab)} labels")
    present = np.unique(np.concatenate(label_list))[: max(1, int(n_classes))]
    cols = max(1, int(n_instances))
    # rows of each chosen class, in file order, at most `cols` per class
    picks = {int(k): [] for k in present}
    for f, lab in enumerate(label_list):
        for k in present:
            need = cols - len(picks[int(k)])
            if need > 0:
                picks[int(k)] += [(f, int(i)) for i in np.flatnonzero(lab == k)[:need]]
    rows = len(present)
    fig = _figure(1.2 * cols + 0.8, 1.2 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, k in enumerate(present):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(picks[int(k)]):
                f, i = picks[int(k)][c]
                cube = np.asarray(cube_list[f][i], dtype=np.float32)
                ax.imshow(_axial(cube[:, :, cube.shape[2] // 2]), cmap="gray", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
            if c == 0:
                ax.set_ylabel(f"class {int(k)}", fontsize=8)
            if r == 0:
                ax.set_title("reference" if c == 0 else f"#{c}", fontsize=8)
    fig.suptitle("self-discovery: pattern classes (rows), nearest instances (columns), middle axial slice",
                 fontsize=9)
    return _save(fig, path)
