"""The stages of a transfer comparison, each one bundle config run with overrides.

* :func:`extract_pool_cubes`: cubes from the pretraining pool (``extract_cubes_from_folder``);
* :func:`pretrain`: the bundle's own pretraining (``training.json``) on those cubes;
* :func:`finetune`: supervised fine-tuning (``train.json``) from the pretrained weights or from scratch;
* :func:`segment_and_score`: sliding-window inference on the test volumes (``inference.json``), Dice.

Every override names an id the config defines (checked before the workflow is built: an id that
a config lacks would otherwise be added silently and change nothing). Every run writes into its
own fresh folder, so no run replaces a checkpoint it did not make.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from genesis_monai.transfer.plan import TransferPlan
from genesis_monai.transfer.progress import Progress

__all__ = ["key_metric_name", "stage_overrides", "fresh_run_dir", "extract_pool_cubes", "pretrain", "finetune",
           "segment_and_score", "load_test_case", "curves_by_init", "dice", "PretrainResult", "FinetuneResult", "TestResult", "RUN_MARKER"]

#: marks a folder as a run folder of this job: only such folders are emptied for a rerun
RUN_MARKER = ".genesis_transfer_run"
#: config file of each stage
STAGE_CONFIGS = {"pretrain": "training.json", "finetune": "train.json", "inference": "inference.json",
                 "discovery": "discovery.json"}


def key_metric_name(bundle: str, config: str) -> str:
    """The (first) key metric a bundle config validates with, e.g. ``val_mse`` or ``val_mean_dice``."""
    from genesis_monai.bundles import bundle_parser

    metrics = bundle_parser(bundle, config).get("validate#key_metric")
    if not isinstance(metrics, dict) or not metrics:
        raise KeyError(f"{bundle}/configs/{config} defines no validate#key_metric")
    return next(iter(metrics))


def _parser(bundle_root: str, config: str):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_root, "configs", config))
    return parser


def _ids(config: Any, prefix: str = "") -> List[str]:
    """Every id of a config, nested ones joined with ``#``."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    out: List[str] = []
    for key, value in items:
        id_ = f"{prefix}#{key}" if prefix else str(key)
        out += [id_] + _ids(value, id_)
    return out


def stage_overrides(plan: TransferPlan, bundle_root: str, stage: str, own: Mapping[str, Any]) -> Dict[str, Any]:
    """The overrides of ``stage``: ``own`` (the job's), then the plan's overrides that the stage's config defines.

    Raises KeyError naming an id of ``own`` or of the plan's stage overrides that the config lacks, and
    an id of ``plan.overrides`` that none of the three configs defines (with the nearest known id).
    """
    parsers = {s: _parser(bundle_root, c) for s, c in STAGE_CONFIGS.items()
               if os.path.isfile(os.path.join(bundle_root, "configs", c))}
    parser, config = parsers[stage], STAGE_CONFIGS[stage]

    def missing(ids, p) -> List[str]:
        return [i for i in ids if i not in p]

    def nearest(i: str, p) -> str:
        near = difflib.get_close_matches(i, sorted(_ids(p.get())), n=1, cutoff=0.6)
        return f"{i!r}" + (f" (did you mean {near[0]!r}?)" if near else "")

    mine = dict(plan.stage_overrides.get(stage, {}))
    bad = missing(own, parser) + missing(mine, parser)
    if bad:
        raise KeyError(f"{bundle_root}/configs/{config} defines no id {', '.join(nearest(i, parser) for i in bad)}")
    nowhere = [i for i in plan.overrides if all(i not in p for p in parsers.values())]
    if nowhere:
        raise KeyError(f"no config of {bundle_root} defines {', '.join(nearest(i, parser) for i in nowhere)}")
    shared = {k: v for k, v in plan.overrides.items() if k in parser}
    return {**dict(own), **shared, **mine}


def _workflow(bundle_root: str, stage: str, workflow_type: str, overrides: Dict[str, Any]):
    """An initialised ``ConfigWorkflow`` of the stage's config (``monai.bundle.create_workflow``)."""
    from monai.bundle import create_workflow

    with warnings.catch_warnings():  # our own bundle: MONAI's "only trust configs you know" warning is noise here
        warnings.filterwarnings("ignore", message="parsing config_file")
        return create_workflow(config_file=os.path.join(bundle_root, "configs", STAGE_CONFIGS[stage]),
                               meta_file=os.path.join(bundle_root, "configs", "metadata.json"),
                               logging_file=False, workflow_type=workflow_type, **overrides)


def fresh_run_dir(path: str) -> str:
    """``path`` created empty and marked as a run folder; a marked folder of an earlier run is emptied first.

    Raises FileExistsError for a non-empty folder without the marker (never deletes what this job did
    not write).
    """
    path = os.path.abspath(path)
    if os.path.isdir(path) and os.listdir(path):
        if not os.path.isfile(os.path.join(path, RUN_MARKER)):
            raise FileExistsError(f"{path} exists, is not empty and was not written by a transfer run: choose "
                                  "another output_dir")
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, RUN_MARKER), "w").close()
    return path


def _common(plan: TransferPlan, bundle_root: str, device: str, seed: int) -> Dict[str, Any]:
    return {"bundle_root": bundle_root, "device": f"$torch.device('{device}')", "seed": int(seed),
            "network_width": plan.width}


# --------------------------------------------------------------------------------------------- #
def extract_pool_cubes(plan: TransferPlan, pool_dir: str, cubes_dir: str, options: Mapping[str, Any],
                       seed: int = 0) -> Dict[str, Any]:
    """Cut ``plan.cube_shape`` cubes out of every pool volume into ``cubes_dir`` (90% training, 10% validation).

    ``options`` are ExtractionOptions fields (the rule, borders, cubes per volume, modality); the folds of
    the dealt volumes are split 9:1 (no test folds: held-out volumes are not in the pool). Returns the
    extraction summary (``splits``: cubes per split, ``skipped``, ``seconds``).
    """
    from genesis_monai.data.extract import extract_cubes_from_folder

    opts = {"modality": plan.modality, "seed": int(seed), "splits": {"training": list(range(9)), "validation": [9]},
            **dict(options), "crop": plan.cube_shape}
    return extract_cubes_from_folder(pool_dir, cubes_dir, opts, progress=False, overwrite=True)


def discovers_patterns(bundle_root: str) -> bool:
    """Whether the bundle pretrains on discovered patterns (it has ``configs/discovery.json``: Semantic
    Genesis, TransVW) rather than on cubes cut from the volumes (Models Genesis)."""
    return os.path.isfile(os.path.join(bundle_root, "configs", "discovery.json"))


def discover(plan: TransferPlan, bundle_root: str, pool_dir: str, run_dir: str, device: str, seconds: float,
             progress: Progress) -> Dict[str, Any]:
    """Self-discovery on the pool volumes with the bundle's ``discovery.json`` (auto-encoder for ``seconds``,
    then features and patterns of ``plan.cube_shape``); returns ``{"patterns_dir", "seconds", "classes"}``.

    The preset decides the discovery scale: ``demo`` uses the bundle's demo caps for the class and instance
    counts (capped by the pool size), ``paper`` the published ones (C = 200 generated, K = 200 / 30).
    """
    from monai.bundle import ConfigWorkflow

    run_dir = fresh_run_dir(run_dir)
    patterns_dir = os.path.join(run_dir, "patterns")
    parser = _parser(bundle_root, "discovery.json")
    caps = parser.get("demo_caps", {})
    n_volumes = len([n for n in os.listdir(pool_dir) if not n.startswith(".")])
    n_val = max(1, int(round(0.1 * n_volumes)))
    own: Dict[str, Any] = {
        **_common(plan, bundle_root, device, plan.seeds[0]), "dataset_dir": pool_dir, "patterns_dir": patterns_dir,
        "ckpt_dir": os.path.join(run_dir, "models"), "output_dir": run_dir, "cube_shape": list(plan.cube_shape),
        "use_demo_caps": plan.preset == "demo", "time_budget_minutes": seconds / 60.0, "max_epochs": 10**6,
        "intensity_preset": plan.modality,
    }
    if plan.preset == "demo":
        own["n_instances"] = int(min(n_volumes - n_val, 3 * int(caps.get("discovery_instances", 8))))
        own["n_instances_val"] = int(min(n_val, int(caps.get("discovery_instances_val", 2))))
        own["n_classes"] = int(min(n_volumes - n_val, 2 * int(caps.get("discovery_classes", 6))))
    overrides = stage_overrides(plan, bundle_root, "discovery", own)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="parsing config_file")
        wf = ConfigWorkflow(config_file=os.path.join(bundle_root, "configs", "discovery.json"),
                            meta_file=os.path.join(bundle_root, "configs", "metadata.json"), logging_file=False,
                            workflow_type="train", run_id="training", **overrides)
        wf.initialize()
        wf.run()
        wf.finalize()
    n_classes = int(wf.parser.get_parsed_content("n_classes"))
    return {"patterns_dir": patterns_dir, "seconds": time.perf_counter() - t0, "classes": n_classes}


# --------------------------------------------------------------------------------------------- #
@dataclass
class PretrainResult:
    """What pretraining left: the checkpoint, its validation curve ``[(seconds, epoch, value)]``, times."""

    path: str
    seconds: float
    epochs: int
    iterations: int
    metric: str
    curve: List[Tuple[float, int, float]] = field(default_factory=list)
    montage: Optional[str] = None


def pretrain(plan: TransferPlan, bundle_root: str, cubes_dir: str, run_dir: str, device: str,
             progress: Progress) -> PretrainResult:
    """Pretrain with the bundle's ``training.json`` on the cubes of ``cubes_dir`` for ``plan.pretrain_seconds``."""
    from ignite.engine import Events

    metric = key_metric_name(bundle_root, "training.json")
    run_dir = fresh_run_dir(run_dir)
    own: Dict[str, Any] = {
        **_common(plan, bundle_root, device, plan.seeds[0]), "num_workers": plan.num_workers, "dataset_dir": cubes_dir,
        "ckpt_dir": os.path.join(run_dir, "models"), "output_dir": run_dir, "cube_shape": list(plan.cube_shape),
        "batch_size": plan.pretrain_batch_size, "max_epochs": 10**6, "val_interval": 1, "sample_interval": 1,
        "time_budget_minutes": plan.pretrain_seconds / 60.0,
    }
    if plan.pretrain_optimizer is not None:
        own["optimizer"] = dict(plan.pretrain_optimizer)
    wf = _workflow(bundle_root, "pretrain", "train", stage_overrides(plan, bundle_root, "pretrain", own))
    trainer = wf.parser.get_parsed_content("train#trainer")
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    result = PretrainResult(path="", seconds=0.0, epochs=0, iterations=0, metric=metric)
    t0 = [time.perf_counter()]
    trainer.add_event_handler(Events.STARTED, lambda _: t0.__setitem__(0, time.perf_counter()))

    def record(engine) -> None:
        value = float(engine.state.metrics[metric])
        result.curve.append((time.perf_counter() - t0[0], int(trainer.state.epoch), value))
        progress.event(f"pretraining epoch {trainer.state.epoch}: validation {metric} {value:.4f} "
                       f"({result.curve[-1][0]:.0f} s)")

    evaluator.add_event_handler(Events.EPOCH_COMPLETED, record)
    wf.run()
    wf.finalize()
    result.seconds = time.perf_counter() - t0[0]
    result.epochs, result.iterations = int(trainer.state.epoch), int(trainer.state.iteration)
    best = wf.parser.get("best_filename", "pretrained.pt")
    result.path = os.path.join(run_dir, "models", str(best))
    if not os.path.isfile(result.path):
        raise RuntimeError(f"pretraining wrote no checkpoint {result.path}")
    samples = sorted(glob.glob(os.path.join(run_dir, "samples", "*.png")))
    result.montage = samples[-1] if samples else None
    return result


# --------------------------------------------------------------------------------------------- #
@dataclass
class FinetuneResult:
    """One fine-tune: validation curve ``[(seconds, iteration, dice)]``, best validation Dice, times, checkpoint."""

    init: str
    seed: int
    ckpt_dir: str
    seconds: float = 0.0
    epochs: int = 0
    iterations: int = 0
    best_val: float = float("nan")
    curve: List[Tuple[float, int, float]] = field(default_factory=list)


def finetune(plan: TransferPlan, bundle_root: str, labeled_dir: str, run_dir: str, device: str, seed: int,
             pretrained: Optional[str], progress: Progress) -> FinetuneResult:
    """Fine-tune with the bundle's ``train.json`` for ``plan.finetune_seconds``; from scratch when ``pretrained`` is None.

    Validates every ``plan.val_interval`` epochs and once more at the end (when the last epoch was not
    validated); the evaluator's checkpoint saver keeps the best-validation model as ``models/model.pt``.
    """
    from ignite.engine import Events

    metric = key_metric_name(bundle_root, "train.json")
    init = "scratch" if pretrained is None else "pretrained"
    run_dir = fresh_run_dir(run_dir)
    own: Dict[str, Any] = {
        **_common(plan, bundle_root, device, seed), "num_workers": plan.num_workers, "dataset_dir": labeled_dir,
        "ckpt_dir": os.path.join(run_dir, "models"), "output_dir": run_dir, "n_labeled": plan.n_labeled,
        "patch_size": list(plan.patch_size), "epochs": 10**6, "val_interval": plan.val_interval,
        "sw_overlap": plan.sw_overlap, "intensity_preset": plan.modality,
        "time_budget_minutes": plan.finetune_seconds / 60.0, "from_scratch": pretrained is None,
    }
    if pretrained is not None:
        own["pretrained_path"] = pretrained
    wf = _workflow(bundle_root, "finetune", "train", stage_overrides(plan, bundle_root, "finetune", own))
    trainer = wf.parser.get_parsed_content("train#trainer")
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    result = FinetuneResult(init=init, seed=int(seed), ckpt_dir=os.path.join(run_dir, "models"))
    t0 = [time.perf_counter()]
    trainer.add_event_handler(Events.STARTED, lambda _: t0.__setitem__(0, time.perf_counter()))
    validated_at = [-1]

    def record(engine) -> None:
        value = float(engine.state.metrics[metric])
        validated_at[0] = int(trainer.state.epoch)
        result.curve.append((time.perf_counter() - t0[0], int(trainer.state.iteration), value))
        progress.event(f"{init} seed {seed}: validation Dice {value:.3f} at {result.curve[-1][0]:.0f} s "
                       f"(iteration {trainer.state.iteration})")

    evaluator.add_event_handler(Events.EPOCH_COMPLETED, record)
    wf.run()
    if validated_at[0] != int(trainer.state.epoch):  # the budget ended between validations: validate the last model
        evaluator.run(global_epoch=trainer.state.epoch)
    wf.finalize()
    result.seconds = time.perf_counter() - t0[0]
    result.epochs, result.iterations = int(trainer.state.epoch), int(trainer.state.iteration)
    result.best_val = max((v for _, _, v in result.curve), default=float("nan"))
    return result


# --------------------------------------------------------------------------------------------- #
def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice of two binary masks (values > 0.5 count), any equal shapes; 1.0 when both are empty."""
    pred, label = np.asarray(pred) > 0.5, np.asarray(label) > 0.5
    denom = int(pred.sum()) + int(label.sum())
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, label).sum() / denom)


@dataclass
class TestResult:
    """Test-set scores of one fine-tuned model: Dice per case (datalist order), the masks, inference seconds."""

    dice: List[float]
    masks: List[str]
    images: List[str]
    labels: List[str]
    seconds: float

    @property
    def mean(self) -> float:
        """Mean Dice over the test cases."""
        return float(np.mean(self.dice))


def segment_and_score(plan: TransferPlan, bundle_root: str, labeled_dir: str, ckpt_dir: str, out_dir: str,
                      device: str) -> TestResult:
    """Segment the ``test`` list of ``labeled_dir/dataset.json`` with ``inference.json`` and score Dice per case.

    Each mask must have its image's shape and affine (checked); Dice is computed on the masks as written.
    """
    import nibabel as nib

    out_dir = fresh_run_dir(out_dir)
    own = {**_common(plan, bundle_root, device, plan.seeds[0]), "ckpt_dir": ckpt_dir, "output_dir": out_dir,
           "dataset_dir": labeled_dir, "datalist_split": "test", "patch_size": list(plan.patch_size),
           "sw_overlap": plan.sw_overlap, "intensity_preset": plan.modality}
    wf = _workflow(bundle_root, "inference", "infer", stage_overrides(plan, bundle_root, "inference", own))
    t0 = time.perf_counter()
    wf.run()
    wf.finalize()
    seconds = time.perf_counter() - t0
    with open(os.path.join(labeled_dir, "dataset.json")) as f:
        test = json.load(f)["test"]
    stems = [os.path.basename(e["image"]).split(".nii")[0] for e in test]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{labeled_dir}/dataset.json: test images share file names; masks would overwrite each other")
    scores, masks = [], []
    for entry, stem in zip(test, stems):
        mask_path = os.path.join(out_dir, f"{stem}_seg.nii.gz")
        img, pred = nib.load(entry["image"]), nib.load(mask_path)
        if pred.shape[:3] != img.shape[:3] or not np.allclose(pred.affine, img.affine, atol=1e-3):
            raise RuntimeError(f"{mask_path}: geometry {pred.shape} differs from the input {img.shape}")
        label = np.asanyarray(nib.load(entry["label"]).dataobj)
        scores.append(dice(np.asanyarray(pred.dataobj).reshape(img.shape[:3]), label))
        masks.append(mask_path)
    return TestResult(dice=scores, masks=masks, images=[e["image"] for e in test], labels=[e["label"] for e in test],
                      seconds=seconds)


def load_test_case(result: TestResult, index: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, label, prediction)`` arrays (X, Y, Z) of test case ``index`` (image in its raw units)."""
    import nibabel as nib

    image = np.asarray(nib.load(result.images[index]).dataobj, dtype=np.float32)
    label = np.asarray(nib.load(result.labels[index]).dataobj)
    pred = np.asarray(nib.load(result.masks[index]).dataobj).reshape(image.shape[:3])
    return image, label, pred


def curves_by_init(results: Sequence[FinetuneResult]) -> Dict[str, List[FinetuneResult]]:
    """``{"pretrained": [...], "scratch": [...]}`` in seed order."""
    out: Dict[str, List[FinetuneResult]] = {"pretrained": [], "scratch": []}
    for r in sorted(results, key=lambda r: r.seed):
        out[r.init].append(r)
    return out
