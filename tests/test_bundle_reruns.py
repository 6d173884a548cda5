"""Reruns lose nothing (issue 10, rows 1-2), for every bundle: a finished checkpoint is never replaced by a run
that did not make it, and ``--resume true`` brings back everything the run's decisions depend on."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np
import pytest
import torch

from bundle_utils import (BUNDLES_DIR, cpu_overrides, run_workflow, workflow, write_tiny_pretraining_data,
                          write_tiny_segmentation_set)
from genesis_monai.error_summary import exception_chain

BUNDLES = sorted(d for d in os.listdir(BUNDLES_DIR) if os.path.isfile(os.path.join(BUNDLES_DIR, d, "configs",
                                                                                     "metadata.json")))


def _has(bundle: str, config: str) -> bool:
    return os.path.isfile(os.path.join(BUNDLES_DIR, bundle, "configs", config))


def _best_filename(bundle: str, config: str) -> str:
    from genesis_monai.bundles import bundle_parser

    return str(bundle_parser(os.path.join(BUNDLES_DIR, bundle), config).get_parsed_content("best_filename"))


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    """Per bundle: tiny pretraining data in the layout its training.json reads, and the ids that point at it."""
    root = tmp_path_factory.mktemp("pretraining_data")
    return {b: write_tiny_pretraining_data(b, str(root / b)) for b in BUNDLES if _has(b, "training.json")}


def _pretraining(bundle, ckpt_dir, cubes, **overrides):
    return workflow(bundle, ["training.json"], "train", **cpu_overrides(
        ckpt_dir=str(ckpt_dir), output_dir=str(ckpt_dir) + "_out",
        batch_size=4, network_width=0.25, sample_interval=100, **cubes[bundle], **overrides))


def _failure(wf) -> BaseException:
    with pytest.raises(Exception) as info:
        run_workflow(wf)
    return exception_chain(info.value)[-1]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pretraining_rerun_refuses_to_replace_a_finished_checkpoint(bundle, tmp_path, cubes):
    if not _has(bundle, "training.json"):
        pytest.skip(f"{bundle} has no configs/training.json")
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    finished = ckpt / _best_filename(bundle, "training.json")
    torch.save({"model": {"w": torch.ones(3)}}, finished)  # e.g. written by import-weights
    before = finished.read_bytes()
    err = _failure(_pretraining(bundle, ckpt, cubes, max_epochs=1))
    assert isinstance(err, FileExistsError)
    assert str(finished) in str(err) and "--overwrite true" in str(err) and "--ckpt_dir" in str(err)
    assert finished.read_bytes() == before
    assert not glob.glob(str(ckpt / "*resume*")), "nothing may be written before the check"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pretraining_overwrite_keeps_the_previous_checkpoint(bundle, tmp_path, cubes, caplog):
    if not _has(bundle, "training.json"):
        pytest.skip(f"{bundle} has no configs/training.json")
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    finished = ckpt / _best_filename(bundle, "training.json")
    torch.save({"model": {"w": torch.ones(3)}}, finished)
    before = finished.read_bytes()
    with caplog.at_level(logging.WARNING):
        run_workflow(_pretraining(bundle, ckpt, cubes, max_epochs=1, overwrite=True))
    kept = ckpt / finished.name.replace(".pt", ".previous.pt")
    assert kept.read_bytes() == before
    assert str(kept) in caplog.text
    assert "model" in torch.load(finished, weights_only=True) and finished.read_bytes() != before


@pytest.mark.parametrize("bundle", BUNDLES)
def test_resume_restores_best_metric_early_stopping_and_best_ranking(bundle, tmp_path, cubes):
    if not _has(bundle, "training.json"):
        pytest.skip(f"{bundle} has no configs/training.json")
    ckpt = tmp_path / "models"
    first = _pretraining(bundle, ckpt, cubes, max_epochs=2)
    run_workflow(first)
    done = torch.load(ckpt / "pretraining_resume.pt", weights_only=True)
    progress = done["progress"]
    assert progress["best_metric_epoch"] >= 1 and progress["early_stop"]["best_score"] == pytest.approx(
        -progress["best_metric"])
    best = ckpt / _best_filename(bundle, "training.json")
    assert best.is_file()

    second = _pretraining(bundle, ckpt, cubes, max_epochs=2, resume=True)  # already done: restores, runs nothing
    run_workflow(second)
    evaluator = second.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.best_metric == pytest.approx(progress["best_metric"])
    assert evaluator.state.best_metric_epoch == progress["best_metric_epoch"]
    stopper = second.parser.get_parsed_content("early_stop")._handler
    assert stopper.counter == progress["early_stop"]["counter"]
    assert stopper.best_score == pytest.approx(progress["early_stop"]["best_score"])
    ranking = second.parser.get_parsed_content("validate#best_saver")._key_metric_checkpoint
    assert [tuple(x) for x in ranking.state_dict()["_saved"]] == [tuple(x) for x in progress["best_checkpoint"]["_saved"]]
    assert second.parser.get_parsed_content("train#trainer").state.epoch == 2

    third = _pretraining(bundle, ckpt, cubes, max_epochs=3, resume=True)  # one more epoch
    run_workflow(third)
    assert third.parser.get_parsed_content("train#trainer").state.epoch == 3
    # one resume file, replaced in place: none per epoch, none per process
    assert sorted(os.path.basename(p) for p in glob.glob(str(ckpt / "*resume*"))) == ["pretraining_resume.pt"]
    trainer_state = torch.load(ckpt / "pretraining_resume.pt", weights_only=True)["trainer"]
    assert trainer_state["iteration"] == 3 * trainer_state["epoch_length"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_resume_without_a_checkpoint_says_so(bundle, tmp_path, cubes, caplog):
    if not _has(bundle, "training.json"):
        pytest.skip(f"{bundle} has no configs/training.json")
    with caplog.at_level(logging.WARNING):
        run_workflow(_pretraining(bundle, tmp_path / "models", cubes, max_epochs=1, resume=True))
    assert "no resume checkpoint" in caplog.text and "pretraining_resume.pt" in caplog.text


@pytest.mark.parametrize("bundle", BUNDLES)
def test_finetune_rerun_keeps_the_previous_model(bundle, tmp_path, caplog):
    """train.json replaces models/model.pt by default (MONAI Label retrains into it) but keeps a copy first."""
    if not _has(bundle, "train.json"):
        pytest.skip(f"{bundle} has no configs/train.json")
    from genesis_monai.bundles import bundle_network_def

    data = write_tiny_segmentation_set(str(tmp_path / "data"), n=3, shape=(16, 16, 16))
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    net = bundle_network_def(os.path.join(BUNDLES_DIR, bundle), "train.json", {"use_demo_caps": False})
    pretrained = tmp_path / "pretrained.pt"
    torch.save({"model": net.state_dict()}, pretrained)
    model = ckpt / _best_filename(bundle, "train.json")
    torch.save({"w": torch.zeros(2)}, model)
    before = model.read_bytes()
    wf = workflow(bundle, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(ckpt), output_dir=str(tmp_path / "out"), patch_size=[16, 16, 8],
        num_samples=1, epochs=1, val_interval=1, pretrained_path=str(pretrained), use_demo_caps=False))
    with caplog.at_level(logging.WARNING):
        run_workflow(wf)
    kept = ckpt / model.name.replace(".pt", ".previous.pt")
    assert kept.read_bytes() == before and str(kept) in caplog.text
    assert model.read_bytes() != before

    refused = workflow(bundle, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(ckpt), pretrained_path=str(pretrained), use_demo_caps=False, overwrite=False))
    err = _failure(refused)
    assert isinstance(err, FileExistsError) and str(model) in str(err)
