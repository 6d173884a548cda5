"""What a transfer comparison shows: per-init statistics, the table, the pictures.

* :func:`init_statistics`: per initialisation, the mean and spread over seeds of test Dice (and the
  per-seed values, epochs and seconds) — the ``results.pretrained`` / ``results.scratch`` records of
  ``results.json``;
* :func:`verdict`: the difference of the means against the seed spread, in words;
* :func:`format_table`: the table printed at the end;
* :func:`save_validation_curves`, :func:`save_test_overlays`: validation Dice against wall-clock time for
  both inits (every seed), and prediction vs label for both inits on the same test slice.

The spread is the standard deviation over seeds (``ddof=1``; 0 for a single seed).
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from genesis_monai.io_utils import atomic_write

__all__ = ["init_statistics", "verdict", "format_table", "save_validation_curves", "save_test_overlays",
           "INIT_COLOURS"]

#: line colour of each initialisation
INIT_COLOURS = {"pretrained": "#1f77b4", "scratch": "#ff7f0e"}
LABEL_COLOUR, PRED_COLOUR = "#00d000", "#ff3030"


def _mean_sd(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "spread": None}
    return {"mean": float(np.mean(vals)), "spread": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}


def init_statistics(runs: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Summary of one initialisation's runs (seed order), each ``{"seed", "best_val", "test_dice",
    "test_dice_per_case", "epochs", "iterations", "seconds", "inference_seconds", "curve"}``.

    Returns ``test_dice`` (mean over seeds; None when the test set was not scored), ``test_dice_spread``
    (standard deviation over seeds), ``test_dice_per_seed``, ``best_val_dice`` (mean) and its spread and
    per-seed list, and per-seed ``seeds``, ``epochs``, ``iterations``, ``finetune_seconds``,
    ``inference_seconds``, ``test_dice_per_case`` and ``val_curves`` ([(seconds, iteration, Dice)]).
    """
    test = _mean_sd([r.get("test_dice") for r in runs])
    val = _mean_sd([r["best_val"] for r in runs])
    return {
        "test_dice": test["mean"], "test_dice_spread": test["spread"],
        "test_dice_per_seed": [r.get("test_dice") for r in runs],
        "best_val_dice": val["mean"], "best_val_dice_spread": val["spread"],
        "best_val_dice_per_seed": [r["best_val"] for r in runs],
        "seeds": [r["seed"] for r in runs], "epochs": [r["epochs"] for r in runs],
        "iterations": [r["iterations"] for r in runs],
        "finetune_seconds": [round(float(r["seconds"]), 1) for r in runs],
        "inference_seconds": [None if r.get("inference_seconds") is None else round(float(r["inference_seconds"]), 1)
                              for r in runs],
        "test_dice_per_case": [r.get("test_dice_per_case") for r in runs],
        "val_curves": [[list(p) for p in r["curve"]] for r in runs],
    }


def verdict(results: Mapping[str, Mapping[str, Any]], key: str = "test_dice") -> Dict[str, Any]:
    """``{"difference", "spread", "beats_by_more_than_spread", "text"}`` of pretrained minus scratch on ``key``.

    ``spread`` is the larger of the two initialisations' seed spreads; None values when ``key`` was not
    measured.
    """
    pre, scr = results["pretrained"], results["scratch"]
    if pre.get(key) is None or scr.get(key) is None:
        return {"difference": None, "spread": None, "beats_by_more_than_spread": None, "text": f"{key}: not measured"}
    diff = float(pre[key]) - float(scr[key])
    spread = max(float(pre[f"{key}_spread"] or 0.0), float(scr[f"{key}_spread"] or 0.0))
    if diff > spread:
        text = "pretrained ahead by more than the seed spread"
    elif diff < -spread:
        text = "scratch ahead by more than the seed spread"
    else:
        text = "within the seed spread: no difference shown"
    what = "test Dice" if key == "test_dice" else "best validation Dice"
    return {"difference": diff, "spread": spread, "beats_by_more_than_spread": diff > spread,
            "text": f"pretrained - scratch = {diff:+.3f} {what}; seed spread {spread:.3f}: {text}"}


def _fmt(value: Optional[float], spec: str = ".3f") -> str:
    return "n/a" if value is None else format(float(value), spec)


def format_table(summary: Mapping[str, Any]) -> str:
    """The comparison as text: settings, one row per initialisation, the verdict, where the pictures are."""
    r, plan, data, pre = summary["results"], summary["plan"], summary["data"], summary["pretraining"]
    counts = data["counts"]
    curve = pre["curve"]
    first_last = f"{curve[0][2]:.4f} -> {curve[-1][2]:.4f}" if curve else "n/a"
    seeds = ", ".join(str(s) for s in plan["seeds"])
    lines = [
        "",
        f"{summary['bundle']} transfer comparison, preset {plan['preset']}, on {summary['device']}: "
        f"{summary['total_seconds'] / 60:.1f} min (budget {plan['budget_minutes']:g} min)",
        f"network width {plan['width']:g}; cubes {'x'.join(map(str, plan['cube_shape']))}, patches "
        f"{'x'.join(map(str, plan['patch_size']))}",
        f"data: {counts['pool']} unlabeled volumes for pretraining ({data['cubes'].get('training', 0)} + "
        f"{data['cubes'].get('validation', 0)} cubes), {counts['labeled']} labeled for fine-tuning, "
        f"{counts['validation']} validation, {counts['test']} test (held out of both)",
        f"pretraining: {pre['seconds']:.0f} s, {pre['epochs']} epochs ({pre['iterations']} iterations), "
        f"validation {pre['metric']} {first_last}",
        "",
        f"{'init':<11}{'test Dice (mean ± sd)':>22}   {'per seed (' + seeds + ')':<22}{'best val Dice':>14}"
        f"{'epochs':>12}{'fine-tune s':>14}{'infer s':>10}",
    ]
    for name in ("pretrained", "scratch"):
        x = r[name]
        mean_sd = "n/a" if x["test_dice"] is None else f"{x['test_dice']:.3f} ± {x['test_dice_spread']:.3f}"
        per_seed = ", ".join(_fmt(v) for v in x["test_dice_per_seed"])
        val = f"{_fmt(x['best_val_dice'])} ± {_fmt(x['best_val_dice_spread'])}"
        epochs = ", ".join(str(e) for e in x["epochs"])
        secs = ", ".join(f"{s:.0f}" for s in x["finetune_seconds"])
        infer = ", ".join("-" if s is None else f"{s:.0f}" for s in x["inference_seconds"])
        lines.append(f"{name:<11}{mean_sd:>22}   {per_seed:<22}{val:>14}{epochs:>12}{secs:>14}{infer:>10}")
    lines += ["", summary["verdict"]["test"]["text"], summary["verdict"]["validation"]["text"]]
    lines.append("pictures: " + ", ".join(os.path.basename(p) for p in summary["pictures"].values() if p)
                 + f" (in {summary['output_dir']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- #
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def save_validation_curves(results: Mapping[str, Mapping[str, Any]], path: str, title: str = "") -> str:
    """Validation Dice against seconds of fine-tuning, one line per (init, seed), colour by init.

    ``results`` maps ``"pretrained"`` / ``"scratch"`` to :func:`init_statistics` records (their
    ``val_curves`` and ``seeds``). Returns the PNG path.
    """
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    styles = ["-", "--", ":", "-."]
    for name in ("pretrained", "scratch"):
        rec = results[name]
        for i, (seed, curve) in enumerate(zip(rec["seeds"], rec["val_curves"])):
            pts = np.asarray(curve, dtype=np.float64).reshape(-1, 3)
            ax.plot(pts[:, 0], pts[:, 2], styles[i % len(styles)], marker="o", markersize=3, linewidth=1.6,
                    color=INIT_COLOURS[name], label=f"{name}, seed {seed}")
    ax.set_xlabel("fine-tuning wall-clock time (s)")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "validation Dice during fine-tuning (same budget and seeds)", fontsize=10)
    return _save(fig, path)


def _axial(slice_xy: np.ndarray) -> np.ndarray:
    return np.flipud(np.asarray(slice_xy).T)


def save_test_overlays(image01: np.ndarray, label: np.ndarray, preds: Mapping[str, np.ndarray], path: str,
                       scores: Optional[Mapping[str, float]] = None, title: str = "") -> str:
    """One axial test slice: the image, then label (green) vs prediction (red) for each init in ``preds``.

    Args:
        image01: (X, Y, Z) image scaled to [0, 1].
        label: (X, Y, Z) binary label.
        preds: init name -> (X, Y, Z) binary prediction (same shape).
        path: PNG to write.
        scores: init name -> Dice on this case (shown in the panel titles).
        title: figure title.

    The slice is the one with the most label voxels (the middle one for an empty label).
    """
    image01, label = np.asarray(image01, dtype=np.float32), np.asarray(label) > 0.5
    for name, p in preds.items():
        if np.shape(p) != image01.shape or label.shape != image01.shape:
            raise ValueError(f"{name}: prediction {np.shape(p)} / label {label.shape} differ from image {image01.shape}")
    per_slice = label.reshape(-1, label.shape[2]).sum(axis=0)
    z = int(np.argmax(per_slice)) if per_slice.max() > 0 else label.shape[2] // 2
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    n = 1 + len(preds)
    fig = _figure(3.4 * n, 3.4 * image01.shape[1] / image01.shape[0] + 0.8)
    view = _axial(np.clip(image01[:, :, z], 0, 1))
    ax = fig.add_subplot(1, n, 1)
    ax.imshow(view, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"axial slice {z}", fontsize=9)
    for k, (name, pred) in enumerate(preds.items(), start=2):
        ax = fig.add_subplot(1, n, k)
        ax.imshow(view, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        handles = []
        for what, mask, colour in (("label", label, LABEL_COLOUR), ("prediction", np.asarray(pred) > 0.5, PRED_COLOUR)):
            sl = _axial(mask[:, :, z]).astype(np.float32)
            if sl.any():
                ax.imshow(np.ma.masked_equal(sl, 0.0), cmap=ListedColormap([colour]), alpha=0.35, vmin=0, vmax=1,
                          interpolation="nearest")
                if sl.sum() < sl.size:
                    ax.contour(sl, levels=[0.5], colors=[colour], linewidths=1.0)
            handles.append(Line2D([0], [0], color=colour, linewidth=2, label=f"{what} ({int(sl.sum())} px)"))
        score = "" if not scores or name not in scores else f" (case Dice {scores[name]:.3f})"
        ax.set_title(f"{name}{score}", fontsize=9)
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def points(curve: Sequence[Sequence[float]], x: int = 0, y: int = 2) -> List[List[float]]:
    """``[[x, y], ...]`` columns of a recorded curve (e.g. seconds and value of ``[(s, epoch, v)]``)."""
    return [[float(p[x]), float(p[y])] for p in curve]
