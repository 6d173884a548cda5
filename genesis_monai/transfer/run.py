"""Run one pretrained-vs-scratch comparison from a plan and a volume split: :func:`run_transfer`.

Order of work (one progress line each): cube extraction from the pool, pretraining, the fine-tunes
(for each seed both initialisations, alternating which goes first: A B B A ..., so that a change in
machine load does not favour one), test inference of every fine-tuned model, then ``results.json``,
the table and the pictures. Settings are chosen on validation volumes only: the test volumes are
segmented once, by the best-validation checkpoint of each run, after all training has ended.
"""

from __future__ import annotations

from genesis_monai.io_utils import jsonable

import logging
import os
import shutil
import time
from typing import Any, Dict, List, Mapping, Optional

import torch

from genesis_monai.transfer import report, stages
from genesis_monai.transfer.plan import TransferPlan
from genesis_monai.transfer.progress import Progress
from genesis_monai.transfer.splits import StageInputs, VolumeSplit

logger = logging.getLogger(__name__)

__all__ = ["run_transfer", "resolve_device", "n_stages", "DISCOVERY_SHARE"]

#: share of the pretraining budget that self-discovery's auto-encoder gets (bundles with discovery.json);
#: pretraining on the patterns gets the rest, so both together keep the plan's pretraining budget
DISCOVERY_SHARE = 0.3


def _pattern_counts(folder: str) -> Dict[str, int]:
    """Training / validation crops in a discovered-patterns folder (read from the .npy headers)."""
    import numpy as np

    from genesis_monai.data.pattern_files import find_pattern_files

    return {split: int(sum(np.load(r["image"], mmap_mode="r").shape[0] for r in records))
            for split, records in find_pattern_files(folder).items()}


def resolve_device(device: Optional[str]) -> str:
    """``device`` checked (a CUDA device needs CUDA), or CUDA when available, else "cpu"."""
    if device is None:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    dev = torch.device(str(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but CUDA is not available here; pass --device cpu "
                           "(and expect a CPU to need far longer than the preset's budget)")
    return str(dev)


def n_stages(plan: TransferPlan) -> int:
    """Progress stages of a job: data, cubes, pretraining, each fine-tune, test, report."""
    return 5 + plan.n_finetunes


def _order(seeds) -> List[tuple]:
    out = []
    for i, seed in enumerate(seeds):
        pair = [("pretrained", seed), ("scratch", seed)]
        out += pair if i % 2 == 0 else pair[::-1]
    return out


def run_transfer(plan: TransferPlan, split: VolumeSplit, inputs: StageInputs, output_dir: str,
                 extraction: Mapping[str, Any], progress: Progress, data_info: Optional[Dict[str, Any]] = None,
                 ) -> Dict[str, Any]:
    """Run the comparison; returns the summary also written to ``output_dir/results.json``.

    Args:
        plan: the settings (:class:`~genesis_monai.transfer.plan.TransferPlan`).
        split: which volume plays which role (checked again here).
        inputs: the pool folder and the labeled datalist (:func:`~genesis_monai.transfer.splits.write_stage_inputs`).
        output_dir: where run folders, masks, pictures and ``results.json`` go.
        extraction: cube-extraction options for the pool (fields of ExtractionOptions).
        progress: the job's progress printer (its clock started with the job).
        data_info: extra facts about the data recorded in ``results.json`` (source, generation time).
    """
    from genesis_monai.bundles import bundle_path
    from genesis_monai.io_utils import atomic_write_json

    split.check()
    bundle_root = str(bundle_path(plan.bundle))
    device = resolve_device(plan.device)
    output_dir = os.path.abspath(output_dir)
    runs_dir = os.path.join(output_dir, "runs")
    times: Dict[str, float] = {}
    for line in plan.budget_warnings():
        logger.warning("transfer plan: %s", line)

    if stages.discovers_patterns(bundle_root):
        # 1-2. self-discovery on the pool only, then pretraining on its patterns, within one pretraining budget
        share = DISCOVERY_SHARE
        progress.stage(f"self-discovery ({plan.bundle} discovery.json): auto-encoder for "
                       f"{share * plan.pretrain_seconds:.0f} s, features, patterns from {len(split.pool)} unlabeled "
                       "volumes")
        found = stages.discover(plan, bundle_root, inputs.pool_dir, os.path.join(runs_dir, "discovery"), device,
                                share * plan.pretrain_seconds, progress)
        times["discovery"] = found["seconds"]
        cubes_dir = found["patterns_dir"]
        summary_cubes = {"splits": _pattern_counts(cubes_dir), "skipped": []}
        cubes = dict(summary_cubes["splits"])
        progress.event(f"{found['classes']} pattern classes: {cubes.get('training', 0)} training + "
                       f"{cubes.get('validation', 0)} validation crops in {found['seconds']:.0f} s")
        pretrain_plan = plan.replace(pretrain_fraction=plan.pretrain_fraction * (1.0 - share),
                                     stage_overrides={**plan.stage_overrides, "pretrain": {
                                         "cls_classes": found["classes"], **plan.stage_overrides.get("pretrain", {})}})
    else:
        # 1. cubes from the pool only
        progress.stage(f"cube extraction: {len(split.pool)} unlabeled volumes -> "
                       f"{'x'.join(map(str, plan.cube_shape))} cubes (rule {extraction.get('rule', 'auto')}, "
                       f"border {tuple(extraction.get('border', ()))})")
        t0 = time.perf_counter()
        cubes_dir = os.path.join(output_dir, "cubes")
        summary_cubes = stages.extract_pool_cubes(plan, inputs.pool_dir, cubes_dir, extraction, seed=plan.seeds[0])
        times["cubes"] = time.perf_counter() - t0
        cubes = dict(summary_cubes.get("splits", {}))
        progress.event(f"{cubes.get('training', 0)} training + {cubes.get('validation', 0)} validation cubes "
                       f"({len(summary_cubes.get('skipped', []))} volumes skipped) in {times['cubes']:.0f} s")
        pretrain_plan = plan

    # 2. pretraining
    progress.stage(f"pretraining ({plan.bundle} training.json, width {plan.width:g}) for "
                   f"{pretrain_plan.pretrain_seconds:.0f} s")
    pre = stages.pretrain(pretrain_plan, bundle_root, cubes_dir, os.path.join(runs_dir, "pretraining"), device,
                          progress)
    times["pretraining"] = pre.seconds

    # 3. fine-tunes, same seeds and budget for both initialisations
    finetunes: List[stages.FinetuneResult] = []
    for init, seed in _order(plan.seeds):
        progress.stage(f"fine-tune from {init}, seed {seed}: {plan.n_labeled} labeled volumes, "
                       f"{plan.finetune_seconds:.0f} s")
        finetunes.append(stages.finetune(plan, bundle_root, inputs.labeled_dir,
                                         os.path.join(runs_dir, f"finetune_{init}_seed{seed}"), device, seed,
                                         pre.path if init == "pretrained" else None, progress))
        progress.event(f"best validation Dice {finetunes[-1].best_val:.3f} after {finetunes[-1].iterations} "
                       f"iterations ({finetunes[-1].seconds:.0f} s)")
    times["finetune"] = sum(r.seconds for r in finetunes)

    # 4. the held-out test volumes, once per fine-tuned model (its best-validation checkpoint)
    tests: Dict[tuple, stages.TestResult] = {}
    if plan.evaluate_test:
        progress.stage(f"test: segmenting {len(split.test)} held-out volumes with each of {len(finetunes)} models")
        for r in finetunes:
            tests[(r.init, r.seed)] = stages.segment_and_score(
                plan, bundle_root, inputs.labeled_dir, r.ckpt_dir,
                os.path.join(runs_dir, f"finetune_{r.init}_seed{r.seed}", "test_masks"), device)
            t = tests[(r.init, r.seed)]
            progress.event(f"{r.init} seed {r.seed}: test Dice {t.mean:.3f} ({t.seconds:.0f} s)")
        times["test"] = sum(t.seconds for t in tests.values())
    else:
        progress.stage("test: skipped (evaluate_test=False: choosing settings on validation only)")

    # 5. statistics, pictures, results.json, table
    progress.stage("report: table, pictures, results.json")
    by_init: Dict[str, List[Dict[str, Any]]] = {"pretrained": [], "scratch": []}
    for r in sorted(finetunes, key=lambda r: r.seed):
        t = tests.get((r.init, r.seed))
        by_init[r.init].append({
            "seed": r.seed, "best_val": r.best_val, "epochs": r.epochs, "iterations": r.iterations,
            "seconds": r.seconds, "curve": r.curve, "test_dice": None if t is None else t.mean,
            "test_dice_per_case": None if t is None else t.dice,
            "inference_seconds": None if t is None else t.seconds})
    results = {name: report.init_statistics(runs) for name, runs in by_init.items()}
    pictures: Dict[str, Optional[str]] = {}
    pictures["validation_curves"] = report.save_validation_curves(
        results, os.path.join(output_dir, "validation_dice_vs_time.png"),
        title=f"{plan.bundle}: validation Dice while fine-tuning ({plan.n_labeled} labeled volumes)")
    from genesis_monai.viz import save_learning_curves

    pictures["pretraining_curve"] = save_learning_curves(
        {f"validation {pre.metric}": report.points(pre.curve)}, os.path.join(output_dir, "pretraining_curve.png"),
        title=f"{plan.bundle} pretraining", xlabel="seconds", ylabel=pre.metric)
    if pre.montage:
        pictures["degradation_montage"] = shutil.copyfile(pre.montage, os.path.join(output_dir, "degradation_montage.png"))
    if tests:
        first = plan.seeds[0]
        image, label, pred_pre = stages.load_test_case(tests[("pretrained", first)])
        pred_scr = stages.load_test_case(tests[("scratch", first)])[2]
        from genesis_monai.data.intensity import intensity_window, normalise_intensity

        lo, hi = intensity_window(image, plan.modality)
        pictures["test_overlay"] = report.save_test_overlays(
            normalise_intensity(image, lo, hi), label, {"pretrained": pred_pre, "scratch": pred_scr},
            os.path.join(output_dir, "test_overlay.png"),
            scores={"pretrained": tests[("pretrained", first)].dice[0], "scratch": tests[("scratch", first)].dice[0]},
            title=f"{os.path.basename(tests[('pretrained', first)].images[0])}: label (green) vs prediction (red), "
                  f"seed {first}")
    total = progress.elapsed
    summary: Dict[str, Any] = {
        "bundle": plan.bundle, "device": device, "output_dir": output_dir, "plan": plan.as_dict(),
        "data": {**(data_info or {}), "counts": split.counts(), "cubes": cubes, "extraction": jsonable(extraction),
                 "skipped_volumes": summary_cubes.get("skipped", []),
                 "labeled": [e["image"] for e in split.labeled], "validation": [e["image"] for e in split.validation],
                 "test": [e["image"] for e in split.test], "excluded_from_pool": list(split.excluded)},
        "pretraining": {"seconds": pre.seconds, "epochs": pre.epochs, "iterations": pre.iterations,
                        "metric": pre.metric, "curve": [list(p) for p in pre.curve], "checkpoint": pre.path},
        "results": results,
        "verdict": {"test": report.verdict(results, "test_dice"), "validation": report.verdict(results, "best_val_dice")},
        "pictures": pictures, "stage_seconds": times, "total_seconds": total,
    }
    summary["table"] = report.format_table(summary)
    atomic_write_json(os.path.join(output_dir, "results.json"), summary)
    return summary

