"""Pictures: degradation montages, learning curves, segmentation overlays.

Matplotlib with the Agg canvas only (figures are built with :class:`matplotlib.figure.Figure`,
never through pyplot's global state), so nothing needs a display and pictures can be saved
from worker threads. Every picture is written atomically (:func:`genesis_monai.io_utils.atomic_write`:
a temporary file in the target folder, renamed into place); parent folders are created.

Axial slices of (X, Y, Z) volumes are shown with X (patient right for RAS data) to the right
and Y (anterior) up.
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from genesis_monai.io_utils import atomic_write

__all__ = ["save_degradation_montage", "save_learning_curves", "save_overlay", "to_numpy"]

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = Any  # numpy arrays, torch tensors, MONAI MetaTensors, nested sequences

LABEL_COLOUR = "#00d000"
PRED_COLOUR = "#ff3030"


def to_numpy(x: ArrayLike, name: str = "array") -> np.ndarray:
    """A float numpy copy of a numpy array / torch tensor (any device, grad or not) / sequence."""
    # not monai.utils.convert_to_numpy: it would import MONAI (seconds) here and lose the error naming `name`
    if x is None:
        raise ValueError(f"{name} is None")
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    if hasattr(x, "numpy"):
        try:
            x = x.numpy()
        except TypeError:  # e.g. bfloat16 tensors
            x = x.float().numpy()
    try:
        return np.array(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} cannot be read as a numeric array: {err}") from err


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: PathLike) -> str:
    """Save ``fig`` as PNG at ``path`` atomically (:func:`genesis_monai.io_utils.atomic_write`); returns the path."""
    path = os.path.abspath(os.fspath(path))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _axial(slice_xy: np.ndarray) -> np.ndarray:
    """A 2D (X, Y) slice as an image array: rows = Y from high (top) to low, columns = X."""
    return np.flipud(np.asarray(slice_xy).T)


# ----------------------------------------------------------------------------------------------


def save_degradation_montage(
    original: ArrayLike,
    degraded: ArrayLike,
    restored: Optional[ArrayLike] = None,
    path: PathLike = "degradation_montage.png",
    n: int = 4,
    title: str = "",
) -> str:
    """Montage of degraded / restored / original samples, one row per sample.

    Args:
        original: batch (N, 1, X, Y, Z) for 3D or (N, 1, X, Y) for 2D, values in [0, 1]
            (numpy array or torch tensor on any device).
        degraded: the degraded inputs, same shape as ``original``.
        restored: optional network outputs, same shape (a column is added when given).
        path: PNG file to write.
        n: at most this many samples (rows).
        title: figure title.

    Shows the middle axial (Z) slice of 3D samples, grey colormap with vmin 0, vmax 1.
    Returns the absolute path written. Raises ValueError on mismatching or wrong shapes.
    """
    columns = [("degraded", to_numpy(degraded, "degraded"))]
    if restored is not None:
        columns.append(("restored", to_numpy(restored, "restored")))
    columns.append(("original", to_numpy(original, "original")))
    ref_name, ref = columns[-1]
    if ref.ndim not in (4, 5) or ref.shape[0] < 1:
        raise ValueError(f"original must have shape (N, 1, X, Y, Z) or (N, 1, X, Y) with N >= 1, "
                         f"got {tuple(ref.shape)}")
    if ref.shape[1] != 1:
        raise ValueError(f"original must have one channel: shape (N, 1, X, Y, Z) or (N, 1, X, Y), got "
                         f"{tuple(ref.shape)} (missing channel dimension?)")
    for name, arr in columns:
        if arr.shape != ref.shape:
            raise ValueError(f"{name} has shape {tuple(arr.shape)} but original has {tuple(ref.shape)}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows = min(n, ref.shape[0])

    def view(arr: np.ndarray, i: int) -> np.ndarray:
        sample = arr[i, 0]
        return _axial(sample[..., sample.shape[-1] // 2] if sample.ndim == 3 else sample)

    aspect = ref.shape[3] / ref.shape[2]  # rows / columns of the shown image
    cell = 2.2
    fig = _figure(cell * len(columns), cell * aspect * rows + (0.5 if title else 0.2) + 0.3)
    for r in range(rows):
        for c, (name, arr) in enumerate(columns):
            ax = fig.add_subplot(rows, len(columns), r * len(columns) + c + 1)
            ax.imshow(view(arr, r), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"sample {r}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _curve_points(name: str, values: Any) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays from a sequence of (x, y) pairs or a sequence of y values (x = 1, 2, ...)."""
    try:
        items = list(values)
    except TypeError as err:
        raise ValueError(f"curve {name!r} must be a sequence of (x, y) pairs or of numbers, got {values!r}") from err
    if not items:
        return np.zeros(0), np.zeros(0)
    scalar = [np.ndim(v) == 0 for v in items]
    try:
        if all(scalar):
            y = np.asarray(items, dtype=np.float64)
            return np.arange(1, len(y) + 1, dtype=np.float64), y
        if not any(scalar):
            pts = np.asarray([tuple(v) for v in items], dtype=np.float64)
            if pts.ndim == 2 and pts.shape[1] == 2:
                return pts[:, 0], pts[:, 1]
    except (TypeError, ValueError):
        pass
    raise ValueError(f"curve {name!r} must be a sequence of (x, y) pairs or a sequence of numbers, "
                     f"got {items[:3]!r}{'...' if len(items) > 3 else ''}")


def save_learning_curves(
    curves: Mapping[str, Sequence[Any]],
    path: PathLike,
    title: str = "",
    xlabel: str = "epoch",
    ylabel: str = "",
) -> str:
    """Several named curves on one plot (e.g. ``"pretrained val Dice"`` vs ``"scratch val Dice"``).

    Args:
        curves: name -> sequence of (x, y) pairs, or name -> sequence of y values (plotted at
            x = 1, 2, ...). Empty curves are listed in the legend as "(no data)"; NaNs leave gaps.
        path: PNG file to write.
        title, xlabel, ylabel: axis texts.

    Returns the absolute path written. Raises ValueError when ``curves`` is not a mapping or a
    curve is neither form.
    """
    if not isinstance(curves, Mapping):
        raise ValueError(f"curves must be a dict of name -> points, got {type(curves).__name__}")
    parsed = [(str(name), *_curve_points(str(name), values)) for name, values in curves.items()]
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    any_data = False
    for name, x, y in parsed:
        if x.size == 0:
            ax.plot([], [], label=f"{name} (no data)")
            continue
        any_data = True
        ax.plot(x, y, marker="o" if x.size <= 30 else None, markersize=3, linewidth=1.5, label=name)
    if not any_data:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if parsed:
        ax.legend(fontsize=9)
    return _save(fig, path)


def _volume(x: ArrayLike, name: str) -> np.ndarray:
    """(X, Y, Z) float array; leading singleton dims (batch/channel) are dropped."""
    arr = to_numpy(x, name)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume (X, Y, Z) (leading singleton dims allowed), "
                         f"got shape {tuple(to_numpy(x, name).shape)}")
    return arr


def _pick_slice(masks: Sequence[np.ndarray], depth: int) -> int:
    """Axial index with the most voxels of the first non-empty (X, Y, Z) mask; the middle if all are empty."""
    for m in masks:
        per_slice = np.asarray(m).reshape(-1, depth).sum(axis=0)
        if per_slice.max() > 0:
            return int(np.argmax(per_slice))
    return depth // 2


def save_overlay(
    image: ArrayLike,
    label: Optional[ArrayLike],
    pred: Optional[ArrayLike],
    path: PathLike,
    slice_index: Optional[int] = None,
    title: str = "",
    window: Optional[Sequence[float]] = None,
) -> str:
    """An axial slice with the label and prediction contours (and light fills), plus the bare slice.

    Args:
        image: (X, Y, Z) volume (leading singleton batch/channel dims are dropped), values in
            [0, 1]; or raw intensities (e.g. HU) with ``window=(low, high)`` mapped to [0, 1].
        label: binary (X, Y, Z) ground truth (values > 0.5 count), or None.
        pred: binary (X, Y, Z) prediction (values > 0.5 count), or None.
        path: PNG file to write.
        slice_index: axial (Z) slice to show; None picks the slice with the most label voxels
            (or prediction voxels if the label is empty, else the middle slice).
        title: figure title.
        window: intensity window (low, high) for raw images.

    Returns the absolute path written. Raises ValueError on shape mismatches or a bad slice.
    """
    img = _volume(image, "image")
    masks: List[Tuple[str, np.ndarray, str]] = []
    for name, m, colour in (("label", label, LABEL_COLOUR), ("prediction", pred, PRED_COLOUR)):
        if m is None:
            continue
        arr = _volume(m, name)
        if arr.shape != img.shape:
            raise ValueError(f"{name} has shape {tuple(arr.shape)} but image has {tuple(img.shape)}")
        masks.append((name, arr > 0.5, colour))
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not hi > lo:
            raise ValueError(f"window must be (low, high) with high > low, got {window!r}")
        img = (img - lo) / (hi - lo)
    img = np.clip(img, 0.0, 1.0)
    depth = img.shape[2]
    if slice_index is None:
        slice_index = _pick_slice([m for _, m, _ in masks], depth)
    slice_index = int(slice_index)
    if not -depth <= slice_index < depth:
        raise ValueError(f"slice_index {slice_index} out of range for depth {depth}")
    slice_index %= depth

    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    aspect = img.shape[1] / img.shape[0]
    fig = _figure(8.4, 4.2 * aspect + 0.8)
    view = _axial(img[:, :, slice_index])
    ax0 = fig.add_subplot(1, 2, 1)
    ax0.imshow(view, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax0.set_title(f"axial slice {slice_index}", fontsize=10)
    ax1 = fig.add_subplot(1, 2, 2)
    ax1.imshow(view, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    handles = []
    for name, m, colour in masks:
        sl = _axial(m[:, :, slice_index]).astype(np.float32)
        n_vox = int(sl.sum())
        if n_vox:
            ax1.imshow(np.ma.masked_equal(sl, 0.0), cmap=ListedColormap([colour]), alpha=0.3, vmin=0, vmax=1,
                       interpolation="nearest")
            if 0 < n_vox < sl.size:
                ax1.contour(sl, levels=[0.5], colors=[colour], linewidths=1.2)
        handles.append(Line2D([0], [0], color=colour, linewidth=2, label=f"{name} ({n_vox} px)"))
    ax1.set_title("overlay", fontsize=10)
    if handles:
        ax1.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.7)
    for ax in (ax0, ax1):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)
