"""``python -m genesis_monai benchmark semantic-genesis``: the two Semantic Genesis / TransVW speed figures.

(a) the training input pipeline (in-plane elastic deformation + one of four light degradations on
batches of 64x64x32 cubes) against a per-sample reference-style NumPy/SciPy loader
(:mod:`genesis_monai.benchmarks.sg_pipeline`); (b) pattern generation against a literal loop version
of the reference generator (:mod:`genesis_monai.benchmarks.pattern_generation`). Both baselines run in
the same process, on the same data, so the speed-ups compare like with like.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["main"]


def main(part: str = "all", pipeline: Optional[Dict[str, Any]] = None,
         patterns: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run ``part`` ("all", "pipeline" or "patterns"); ``pipeline`` / ``patterns`` are options of each part's ``main``.

    Returns ``{"pipeline": {...}, "patterns": {...}}`` (the parts that ran).
    """
    if part not in ("all", "pipeline", "patterns"):
        raise ValueError(f"part must be 'all', 'pipeline' or 'patterns', got {part!r}")
    out: Dict[str, Any] = {}
    if part in ("all", "pipeline"):
        from genesis_monai.benchmarks import sg_pipeline

        print("== (a) training input pipeline: elastic + one-of-four degradation ==")
        out["pipeline"] = sg_pipeline.main(**dict(pipeline or {}))
    if part in ("all", "patterns"):
        from genesis_monai.benchmarks import pattern_generation

        print("== (b) pattern generation: vectorised vs a literal loop ==")
        out["patterns"] = pattern_generation.main(**dict(patterns or {}))
    return out
