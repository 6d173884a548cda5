"""Pictures of 2D slice networks (SMART-Net): multi-task sample montages, Grad-CAM overlays, t-SNE maps.

Same conventions as :mod:`genesis_monai.viz` (Agg canvas, atomic PNG writes, axial (X, Y) slices
shown with X to the right and Y up). Inputs are numpy arrays or torch tensors on any device.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from genesis_monai.viz import LABEL_COLOUR, PRED_COLOUR, PathLike, _axial, _figure, _save, to_numpy

__all__ = ["save_multitask_montage", "save_gradcam_overlays", "save_embedding_map"]


def _slices(x: Any, name: str, n: Optional[int] = None) -> np.ndarray:
    """(N, 1, X, Y) or (N, X, Y) -> float32 (N, X, Y)."""
    arr = to_numpy(x, name)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, 1, X, Y) or (N, X, Y), got {tuple(arr.shape)}")
    return arr if n is None else arr[:n]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _mask_layer(ax, mask: np.ndarray, colour: str) -> None:
    from matplotlib.colors import ListedColormap

    sl = _axial(mask).astype(np.float32)
    if sl.any():
        ax.imshow(np.ma.masked_equal(sl, 0.0), cmap=ListedColormap([colour]), alpha=0.35, vmin=0, vmax=1,
                  interpolation="nearest")
        if not sl.all():
            ax.contour(sl, levels=[0.5], colors=[colour], linewidths=1.0)


def save_multitask_montage(image: Any, pred: Mapping[str, Any], target: Mapping[str, Any], path: PathLike,
                           n: int = 4, threshold: float = 0.5, title: str = "") -> str:
    """One row per sample: the input slice, label vs predicted mask, reconstruction, with the class probability.

    Args:
        image: (N, 1, X, Y) network input in [0, 1].
        pred: the network's dict of logits: any of ``"cls"`` (N, 1), ``"seg"`` (N, 1, X, Y), ``"rec"`` (N, 1, X, Y).
        target: the targets dict (``"cls"`` (N, 1) slice label, ``"seg"`` mask), entries optional.
        path: PNG file to write; n: at most this many rows; threshold: on sigmoid(seg).

    Returns the absolute path written.
    """
    img = _slices(image, "image", n)
    rows = img.shape[0]
    seg = _sigmoid(_slices(pred["seg"], "pred['seg']", rows)) if "seg" in pred else None
    rec = _slices(pred["rec"], "pred['rec']", rows) if "rec" in pred else None
    cls = _sigmoid(to_numpy(pred["cls"], "pred['cls']").reshape(-1)[:rows]) if "cls" in pred else None
    mask = _slices(target["seg"], "target['seg']", rows) if "seg" in target else None
    label = to_numpy(target["cls"], "target['cls']").reshape(-1)[:rows] if "cls" in target else None
    columns = ["input", "label / prediction"] + (["reconstruction"] if rec is not None else [])
    cell = 2.3
    aspect = img.shape[2] / img.shape[1]
    fig = _figure(cell * len(columns), cell * aspect * rows + (0.5 if title else 0.2) + 0.3)
    for r in range(rows):
        for c, name in enumerate(columns):
            ax = fig.add_subplot(rows, len(columns), r * len(columns) + c + 1)
            shown = rec[r] if name == "reconstruction" else img[r]
            ax.imshow(_axial(shown), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if name == "label / prediction":
                if mask is not None:
                    _mask_layer(ax, mask[r] > 0.5, LABEL_COLOUR)
                if seg is not None:
                    _mask_layer(ax, seg[r] >= threshold, PRED_COLOUR)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                bits = []
                if label is not None:
                    bits.append(f"label {int(label[r] > 0.5)}")
                if cls is not None:
                    bits.append(f"p={cls[r]:.2f}")
                ax.set_ylabel(" ".join(bits) or f"sample {r}", fontsize=8)
    if title:
        fig.suptitle(title + "  (green: label, red: prediction)", fontsize=10)
    return _save(fig, path)


def save_gradcam_overlays(image: Any, cam: Any, path: PathLike, label: Any = None, seg_prob: Any = None,
                          probabilities: Optional[Sequence[float]] = None, titles: Optional[Sequence[str]] = None,
                          threshold: float = 0.5, title: str = "") -> str:
    """One row per slice: the slice, its Grad-CAM heat map over it, and the segmentation next to the label.

    Args:
        image: (N, 1, X, Y) slices in [0, 1].
        cam: (N, 1, X, Y) Grad-CAM maps in [0, 1] (e.g. ``monai.visualize.GradCAM`` output).
        label: optional (N, 1, X, Y) ground-truth masks; seg_prob: optional (N, 1, X, Y) probabilities.
        probabilities: optional per-slice class probabilities shown in the row label; titles: row labels.

    Returns the absolute path written.
    """
    img = _slices(image, "image")
    heat = _slices(cam, "cam")
    if heat.shape != img.shape:
        raise ValueError(f"cam has shape {heat.shape} but image has {img.shape}")
    lab = None if label is None else _slices(label, "label")
    seg = None if seg_prob is None else _slices(seg_prob, "seg_prob")
    rows = img.shape[0]
    columns = ["slice", "Grad-CAM (layer4)"] + (["segmentation"] if seg is not None or lab is not None else [])
    cell = 2.4
    aspect = img.shape[2] / img.shape[1]
    fig = _figure(cell * len(columns), cell * aspect * rows + (0.5 if title else 0.2) + 0.3)
    for r in range(rows):
        for c, name in enumerate(columns):
            ax = fig.add_subplot(rows, len(columns), r * len(columns) + c + 1)
            ax.imshow(_axial(img[r]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if name.startswith("Grad-CAM"):
                ax.imshow(_axial(heat[r]), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
            elif name == "segmentation":
                if lab is not None:
                    _mask_layer(ax, lab[r] > 0.5, LABEL_COLOUR)
                if seg is not None:
                    _mask_layer(ax, seg[r] >= threshold, PRED_COLOUR)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                text = titles[r] if titles is not None else f"slice {r}"
                if probabilities is not None:
                    text += f"\np={float(probabilities[r]):.2f}"
                ax.set_ylabel(text, fontsize=8)
    if title:
        fig.suptitle(title + ("  (green: label, red: prediction)" if "segmentation" in columns else ""), fontsize=10)
    return _save(fig, path)


def save_embedding_map(points: Any, labels: Any, path: PathLike, names: Optional[Mapping[int, str]] = None,
                       title: str = "") -> str:
    """A 2D scatter of embedded samples (e.g. t-SNE of slice features) coloured by their integer label.

    Args:
        points: (N, 2) coordinates; labels: (N,) integer classes; names: class -> legend text.

    Returns the absolute path written.
    """
    pts = to_numpy(points, "points")
    lab = to_numpy(labels, "labels").reshape(-1).astype(np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] != lab.shape[0]:
        raise ValueError(f"points must be (N, 2) with one label each, got points {pts.shape}, labels {lab.shape}")
    palette = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"]
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for k in np.unique(lab):
        sel = lab == k
        name = (names or {}).get(int(k), f"class {int(k)}")
        ax.scatter(pts[sel, 0], pts[sel, 1], s=14, alpha=0.8, color=palette[int(k) % len(palette)],
                   label=f"{name} ({int(sel.sum())})", edgecolors="none")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="best", framealpha=0.7)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
