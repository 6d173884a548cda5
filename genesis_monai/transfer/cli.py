"""Command lines of the transfer comparison.

* ``python -m genesis_monai demo`` (:func:`demo_cli` / :func:`run_demo`): on the procedural demo data;
* ``python -m genesis_monai benchmark transfer --dataset_dir DIR [--unlabeled_dir DIR2]`` (:func:`run_benchmark`):
  on a user's Decathlon-style data set.

Both build a :class:`~genesis_monai.transfer.plan.TransferPlan` from a preset (``--preset demo|paper``)
and the flags, make a :class:`~genesis_monai.transfer.splits.VolumeSplit`, and hand them to
:func:`~genesis_monai.transfer.run.run_transfer`. Flags that are not options of these functions are
bundle config ids set in every stage config that defines them (``--network_def#width 0.5``); an id
no config defines is refused.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from genesis_monai.transfer.plan import TransferPlan, make_plan
from genesis_monai.transfer.progress import Progress

__all__ = ["run_demo", "demo_cli", "run_benchmark", "benchmark_cli"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _log_level(verbose: bool) -> Iterator[None]:
    """Within the job: every log line when ``verbose``, else WARNING and above only (the progress lines
    replace MONAI's per-iteration INFO lines, which MONAI's loggers print to stdout whatever the root
    level). Restored afterwards."""
    import warnings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        yield
        return
    previous = logging.root.manager.disable
    # one line per workflow each: "nvImageCodec is not available" (DICOM), "Logging file is set to False"
    noisy = [logging.getLogger(n) for n in ("monai.data.nvimgcodec_pydicom_plugin", "monai.bundle.workflows")]
    levels = [n.level for n in noisy]
    logging.disable(logging.INFO)
    for n in noisy:
        n.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Current default value of argument `labels")
            warnings.filterwarnings("ignore", message=".*nvImageCodec")
            yield
    finally:
        logging.disable(previous)
        for n, level in zip(noisy, levels):
            n.setLevel(level)


def _flag(value: Any, name: str) -> bool:
    """A command-line boolean: True/False, or the words true/false/yes/no/1/0 (fire passes ``false`` as a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", "none"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _help_asked(func: Any, kwargs: Dict[str, Any]) -> bool:
    """fire passes ``--help`` as a keyword to functions that take ``**kwargs``: print the help then."""
    if kwargs.pop("help", False) or kwargs.pop("h", False):
        import pydoc

        print(pydoc.render_doc(func, title="%s", renderer=pydoc.plaintext))
        return True
    return False


def _stage_overrides(pretrain_overrides: Optional[Mapping[str, Any]], finetune_overrides: Optional[Mapping[str, Any]],
                     inference_overrides: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out = {}
    for stage, value in (("pretrain", pretrain_overrides), ("finetune", finetune_overrides),
                         ("inference", inference_overrides)):
        if value:
            if not isinstance(value, Mapping):
                raise ValueError(f"{stage}_overrides must be a mapping of config ids to values, got {value!r}")
            out[stage] = dict(value)
    return out


def _plan(bundle_root: str, bundle: str, preset: str, settings: Dict[str, Any], overrides: Mapping[str, Any],
          stage: Dict[str, Dict[str, Any]]) -> Tuple[TransferPlan, Dict[str, Any]]:
    if settings.get("seeds") is not None and isinstance(settings["seeds"], (int, str)):
        settings["seeds"] = tuple(int(s) for s in str(settings["seeds"]).replace(",", " ").split())
    return make_plan(bundle_root, bundle, preset, overrides=dict(overrides), stage_overrides=stage, **settings)


def _finish(summary: Dict[str, Any], quiet: bool) -> Dict[str, Any]:
    if not quiet:
        print(summary["table"], flush=True)
    return summary


def run_demo(
    bundle: str = "models_genesis",
    output_dir: str = "demo_output",
    preset: str = "demo",
    budget_minutes: Optional[float] = None,
    device: Optional[str] = None,
    n_volumes: Optional[int] = None,
    volume_shape: Optional[Sequence[int]] = None,
    volume_spacing: Optional[Sequence[float]] = None,
    n_labeled: Optional[int] = None,
    n_val: Optional[int] = None,
    n_test: Optional[int] = None,
    seeds: Optional[Sequence[int]] = None,
    width: Optional[float] = None,
    cube_shape: Optional[Sequence[int]] = None,
    patch_size: Optional[Sequence[int]] = None,
    pretrain_fraction: Optional[float] = None,
    finetune_fraction: Optional[float] = None,
    val_interval: Optional[int] = None,
    cubes_per_volume: Optional[int] = None,
    extraction: Optional[Mapping[str, Any]] = None,
    data_dir: Optional[str] = None,
    data_seed: int = 0,
    evaluate_test: bool = True,
    pretrain_overrides: Optional[Mapping[str, Any]] = None,
    finetune_overrides: Optional[Mapping[str, Any]] = None,
    inference_overrides: Optional[Mapping[str, Any]] = None,
    threads: Optional[int] = None,
    verbose: bool = False,
    quiet: bool = False,
    **overrides: Any,
) -> Dict[str, Any]:
    """Pretrained vs scratch on the procedural demo chest CT; returns the summary (also ``results.json``).

    Pretrains the bundle's network on many unlabeled demo volumes, fine-tunes it on a few labeled ones
    from the pretrained weights and from scratch (same seeds, same budget), picks each run's checkpoint
    on validation volumes, segments held-out test volumes and prints the table.

    Args:
        bundle: bundle folder name (its training.json, train.json and inference.json run every stage).
        output_dir: where data (unless data_dir), run folders, pictures and results.json go.
        preset: "demo" (the bundle's demo caps; fits 10 minutes on a 2-core CPU) or "paper" (the
            published width 1.0 and 64x64x32 shapes, 60 minutes, CUDA).
        budget_minutes: wall-clock budget of the whole job (demo 9, paper 60).
        device: "cpu", "cuda", ... (demo: CUDA when available; paper: cuda).
        n_volumes, volume_shape, volume_spacing: the demo data set (demo: 40 volumes of 96x96x48 at
            3.3x3.3x6.7 mm; paper: 120 of 128x128x64 at 2.5x2.5x5 mm).
        n_labeled, n_val, n_test: labeled volumes for fine-tuning (2), validation (demo 4) and held-out
            test volumes (demo 8); the rest of the volumes are the unlabeled pretraining pool.
        seeds: fine-tuning seeds, each run for both initialisations (demo 0,1; paper 0,1,2).
        width: network width (default: the preset's, read from the bundle configs).
        cube_shape, patch_size: pretraining cube and fine-tuning patch (X, Y, Z), each divisible by 8.
        pretrain_fraction, finetune_fraction: budget shares of pretraining and of all fine-tunes together.
        val_interval: fine-tuning epochs between validations (an epoch is one batch of the labeled volumes).
        cubes_per_volume: pretraining cubes cut from each pool volume (demo 16, paper 32).
        extraction: more cube-extraction options (ExtractionOptions fields), over the demo's own.
        data_dir: demo data folder (default output_dir/data; generated when missing).
        data_seed: seed of the demo data set.
        evaluate_test: False skips the test set (for choosing settings on validation only).
        pretrain_overrides, finetune_overrides, inference_overrides: config ids for one stage only.
        threads: torch CPU threads.
        verbose: MONAI's own log lines too.
        quiet: do not print the table.
        **overrides: bundle config ids set in every stage that defines them (e.g. network_def#width).
    """
    import time

    from genesis_monai.bundles import bundle_path
    from genesis_monai.data.demo import write_demo_dataset
    from genesis_monai.data.pretraining import DEMO_EXTRACTION
    from genesis_monai.transfer.run import n_stages, run_transfer
    from genesis_monai.transfer.splits import demo_volume_split, write_stage_inputs

    _threads(threads)
    verbose, quiet = _flag(verbose, "verbose"), _flag(quiet, "quiet")
    with _log_level(verbose):
        bundle_root = str(bundle_path(bundle))
        settings = dict(budget_minutes=budget_minutes, device=device, n_volumes=n_volumes, volume_shape=volume_shape,
                        volume_spacing=volume_spacing, n_labeled=n_labeled, n_val=n_val, n_test=n_test, seeds=seeds,
                        width=width, cube_shape=cube_shape, patch_size=patch_size, pretrain_fraction=pretrain_fraction,
                        finetune_fraction=finetune_fraction, val_interval=val_interval, cubes_per_volume=cubes_per_volume,
                        evaluate_test=_flag(evaluate_test, "evaluate_test"))
        plan, data = _plan(bundle_root, bundle, preset, settings, overrides,
                           _stage_overrides(pretrain_overrides, finetune_overrides, inference_overrides))
        progress = Progress(n_stages(plan), 60.0 * plan.budget_minutes, stream=None if quiet else _stdout())
        output_dir = os.path.abspath(output_dir)
        data_dir = os.path.abspath(data_dir or os.path.join(output_dir, "data"))
        progress.stage(f"demo data: {data['n_volumes']} procedural chest CT volumes "
                       f"{'x'.join(map(str, data['volume_shape']))} in {data_dir}")
        t0 = time.perf_counter()
        write_demo_dataset(data_dir, n_volumes=int(data["n_volumes"]), shape=tuple(data["volume_shape"]),
                           spacing=tuple(data["volume_spacing"]), seed=int(data_seed))
        split = demo_volume_split(data_dir, plan.n_labeled, plan.n_val, plan.n_test)
        inputs = write_stage_inputs(split, output_dir)
        seconds = time.perf_counter() - t0
        progress.event(f"{len(split.pool)} unlabeled (pretraining), {len(split.labeled)} of them labeled for "
                       f"fine-tuning, {len(split.validation)} validation, {len(split.test)} test ({seconds:.0f} s)")
        options = {**DEMO_EXTRACTION, "scale": int(data["cubes_per_volume"]), **dict(extraction or {})}
        info = {"source": "procedural demo chest CT", "data_dir": data_dir, "data_seed": int(data_seed),
                "generation_seconds": seconds, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}
        return _finish(run_transfer(plan, split, inputs, output_dir, options, progress, info), quiet)


def _stdout():
    import sys

    return sys.stdout


@functools.wraps(run_demo)
def demo_cli(*args: Any, **kwargs: Any) -> None:
    """Command-line entry (``python -m genesis_monai demo``): :func:`run_demo`, printing the table only."""
    if not _help_asked(run_demo, kwargs):
        run_demo(*args, **kwargs)


def _benchmark_sizes(n: int, n_labeled: int, n_val: Optional[int], n_test: Optional[int]) -> Tuple[int, int]:
    """(n_val, n_test) for ``n`` labeled pairs: given values, else 10% (>= 1) and 20% (>= 4) of ``n``."""
    test = n_test if n_test is not None else max(4, int(round(0.2 * n)))
    val = n_val if n_val is not None else max(1, int(round(0.1 * n)))
    if n_test is None and n_labeled + val + test > n:  # a small data set: shrink the default test set first
        test = max(1, n - n_labeled - val)
    return int(val), int(test)


def _image_shapes(paths: Sequence[str]) -> list:
    from genesis_monai.data.readers import read_volume_header

    shapes = []
    for path in paths:
        header = read_volume_header(path) if os.path.isfile(path) else None
        if header is not None:
            shapes.append(tuple(int(s) for s in header.shape))
    return shapes


def _check_single_channel(entries: Sequence[Mapping[str, str]]) -> None:
    for e in entries:
        for shape in _image_shapes([e["image"]]):
            if len(shape) > 3 and any(s != 1 for s in shape[3:]):
                raise ValueError(f"{e['image']} has shape {shape}: the bundle's networks take one channel; write one "
                                 "3D file per channel (e.g. one MRI sequence) and list those")


def run_benchmark(
    dataset_dir: str,
    unlabeled_dir: Optional[str] = None,
    n_labeled: Optional[int] = None,
    budget_minutes: Optional[float] = None,
    modality: str = "ct",
    output_dir: str = "transfer_benchmark",
    bundle: str = "models_genesis",
    preset: str = "paper",
    device: Optional[str] = None,
    n_val: Optional[int] = None,
    n_test: Optional[int] = None,
    seeds: Optional[Sequence[int]] = None,
    width: Optional[float] = None,
    cube_shape: Optional[Sequence[int]] = None,
    patch_size: Optional[Sequence[int]] = None,
    pretrain_fraction: Optional[float] = None,
    finetune_fraction: Optional[float] = None,
    val_interval: Optional[int] = None,
    cubes_per_volume: Optional[int] = None,
    foreground: Optional[str] = None,
    border: Optional[Sequence[int]] = None,
    extraction: Optional[Mapping[str, Any]] = None,
    foreground_labels: Optional[Sequence[int]] = None,
    split_seed: int = 0,
    datalist_file: str = "dataset.json",
    evaluate_test: bool = True,
    pretrain_overrides: Optional[Mapping[str, Any]] = None,
    finetune_overrides: Optional[Mapping[str, Any]] = None,
    inference_overrides: Optional[Mapping[str, Any]] = None,
    threads: Optional[int] = None,
    verbose: bool = False,
    quiet: bool = False,
    **overrides: Any,
) -> Dict[str, Any]:
    """Pretrained vs scratch on your own data: ``benchmark transfer --dataset_dir DIR [--unlabeled_dir DIR2]``.

    ``dataset_dir`` holds a Decathlon-style ``dataset.json`` whose labeled entries (``training``,
    ``validation``, labeled ``test``) are shuffled with ``split_seed`` into test, validation and labeled
    sets; ``unlabeled_dir`` (default: the labeled images not held out) is the pretraining pool, with any
    held-out image found there left out. Labels with values other than 0/1 become binary masks
    (``foreground_labels``, default every value > 0). Cube extraction fits the data
    (:func:`genesis_monai.data.extraction_options.fitted_extraction`): the "tissue" foreground rule for
    CT and MRI (``--foreground lung`` for chest CT, the LUNA16 rule), borders fitted to the smallest pool
    volume (the reference 100/100/30 where it fits); ``--border`` and ``--extraction`` override them.

    Args:
        dataset_dir: folder with the labeled data set and its datalist.
        unlabeled_dir: folder of unlabeled volumes for pretraining (NIfTI, MetaImage, NRRD, DICOM).
        n_labeled: labeled volumes for fine-tuning (2).
        budget_minutes: wall-clock budget of the whole job (preset paper: 60; demo: 9).
        modality: intensity preset: ct | mri | mri_fixed | mri_minmax (fine-tuning, inference and cubes).
        output_dir: where run folders, pictures and results.json go.
        bundle: bundle folder name.
        preset: "paper" (published width 1.0, 64x64x32, CUDA) or "demo" (the bundle's demo caps).
        device: torch device (paper: cuda; pass cpu to run on a CPU).
        n_val, n_test: validation and test volumes (default 10% (>= 1) and 20% (>= 4) of the labeled pairs).
        seeds: fine-tuning seeds (each for both initialisations).
        width, cube_shape, patch_size: network width, cube and patch (X, Y, Z) (default: the preset's).
        pretrain_fraction, finetune_fraction: budget shares of pretraining and of all fine-tunes.
        val_interval: fine-tuning epochs between validations.
        cubes_per_volume: cubes per pool volume (paper 32).
        foreground: cube foreground rule: tissue (default) | lung (chest CT) | off.
        border: cube border X,Y,Z in voxels (default: fitted to the data).
        extraction: any other ExtractionOptions fields, e.g. {"tissue_min": 0.3}.
        foreground_labels: label values that count as foreground (default: every value > 0).
        split_seed: seed of the labeled split.
        datalist_file: the datalist in dataset_dir.
        evaluate_test: False skips the test set (choose settings on validation only).
        pretrain_overrides, finetune_overrides, inference_overrides: config ids for one stage only.
        threads: torch CPU threads.
        verbose: MONAI's own log lines too.
        quiet: do not print the table.
        **overrides: bundle config ids set in every stage that defines them (e.g. network_def#width).
    """
    import time

    from genesis_monai.bundles import bundle_path
    from genesis_monai.data.extraction_options import ExtractionOptions, fitted_extraction
    from genesis_monai.transfer.run import n_stages, run_transfer
    from genesis_monai.transfer.splits import (VolumeSplit, _labeled_entries, binary_label_entries,
                                               dataset_volume_split, write_stage_inputs)

    _threads(threads)
    verbose, quiet = _flag(verbose, "verbose"), _flag(quiet, "quiet")
    with _log_level(verbose):
        bundle_root = str(bundle_path(bundle))
        dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
        n_available = len(_labeled_entries(dataset_dir, datalist_file))
        n_lab = 2 if n_labeled is None else int(n_labeled)
        val, test = _benchmark_sizes(n_available, n_lab, n_val, n_test)
        settings = dict(budget_minutes=budget_minutes, device=device, n_labeled=n_lab, n_val=val, n_test=test,
                        seeds=seeds, width=width, cube_shape=cube_shape, patch_size=patch_size,
                        pretrain_fraction=pretrain_fraction, finetune_fraction=finetune_fraction, val_interval=val_interval,
                        cubes_per_volume=cubes_per_volume, modality=modality, evaluate_test=_flag(evaluate_test, "evaluate_test"))
        plan, data = _plan(bundle_root, bundle, preset, settings, overrides,
                           _stage_overrides(pretrain_overrides, finetune_overrides, inference_overrides))
        progress = Progress(n_stages(plan), 60.0 * plan.budget_minutes, stream=None if quiet else _stdout())
        output_dir = os.path.abspath(output_dir)
        progress.stage(f"data: {n_available} labeled pairs in {dataset_dir}; pool from {unlabeled_dir or dataset_dir}")
        t0 = time.perf_counter()
        split = dataset_volume_split(dataset_dir, unlabeled_dir, plan.n_labeled, plan.n_val, plan.n_test,
                                     seed=split_seed, datalist_file=datalist_file)
        _check_single_channel(split.labeled + split.validation + split.test)
        binary_dir = os.path.join(output_dir, "labels_binary")
        (labeled, n1), (validation, n2), (held, n3) = (binary_label_entries(s, binary_dir, foreground_labels)
                                                      for s in (split.labeled, split.validation, split.test))
        if n1 + n2 + n3:
            progress.event(f"{n1 + n2 + n3} labels with values other than 0/1 written as binary masks in {binary_dir}")
        split = VolumeSplit(pool=split.pool, labeled=tuple(labeled), validation=tuple(validation), test=tuple(held),
                            excluded=split.excluded).check()
        inputs = write_stage_inputs(split, output_dir)
        shapes = _image_shapes(split.pool)
        fitted = fitted_extraction(plan.modality, shapes or [(10**6,) * 3], plan.cube_shape, foreground=foreground)
        if border is not None:
            fitted["border"] = tuple(int(b) for b in (border.split(",") if isinstance(border, str) else border))
        options = {**fitted, "scale": int(data["cubes_per_volume"]), **dict(extraction or {})}
        ExtractionOptions.from_mapping({k: v for k, v in options.items()})  # bad options fail before any work
        seconds = time.perf_counter() - t0
        progress.event(f"{len(split.pool)} unlabeled (pretraining; {len(split.excluded)} held-out images left out), "
                       f"{len(split.labeled)} labeled, {len(split.validation)} validation, {len(split.test)} test "
                       f"({seconds:.0f} s)")
        info = {"source": "user data set", "dataset_dir": dataset_dir, "unlabeled_dir": unlabeled_dir,
                "split_seed": int(split_seed), "relabeled": n1 + n2 + n3,
                "pool_shapes_min": [min(s[i] for s in shapes) for i in range(3)] if shapes else None,
                "extraction_fitted": {k: list(v) if isinstance(v, tuple) else v for k, v in fitted.items()}}
        return _finish(run_transfer(plan, split, inputs, output_dir, options, progress, info), quiet)


@functools.wraps(run_benchmark)
def benchmark_cli(*args: Any, **kwargs: Any) -> None:
    """``python -m genesis_monai benchmark transfer ...``: :func:`run_benchmark`, printing the table only."""
    if not _help_asked(run_benchmark, kwargs):
        run_benchmark(*args, **kwargs)
