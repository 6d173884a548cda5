"""Ids that several configs and bundles share stay identical (see tests/shared_ids.py for the rule)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from bundle_utils import BUNDLES_DIR
from shared_ids import shared_id_drift


def test_committed_bundles_share_ids():
    assert shared_id_drift(BUNDLES_DIR) == []


def _edit(path, edit):
    with open(path) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=4)


@pytest.fixture
def bundles_copy(tmp_path):
    dst = tmp_path / "bundles"
    shutil.copytree(BUNDLES_DIR, dst, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    return dst


def test_drifted_network_def_is_named(bundles_copy):
    _edit(bundles_copy / "models_genesis" / "configs" / "inference.json",
          lambda c: c["network_def"].update(width=0.5))
    problems = shared_id_drift(str(bundles_copy))
    assert any("models_genesis/inference.json: 'network_def'" in p for p in problems), problems


def test_drifted_inferer_and_demo_caps_are_named(bundles_copy):
    cfg = bundles_copy / "models_genesis" / "configs"
    _edit(cfg / "train.json", lambda c: c["validate"]["inferer"].update(mode="constant"))
    _edit(cfg / "inference.json", lambda c: c["demo_caps"].update(network_width=0.5))
    problems = shared_id_drift(str(bundles_copy))
    assert any("train.json: 'validate#inferer'" in p for p in problems), problems
    assert any("inference.json: 'demo_caps'" in p for p in problems), problems


def test_drifted_multi_gpu_overlay_is_named(bundles_copy):
    _edit(bundles_copy / "models_genesis" / "configs" / "multi_gpu_training.json",
          lambda c: c.update({"train#dataloader#shuffle": True}))
    problems = shared_id_drift(str(bundles_copy))
    assert any("multi-GPU overlay differs" in p and "train#dataloader#shuffle" in p for p in problems), problems


def test_a_second_bundle_with_the_same_network_must_match(bundles_copy):
    src = bundles_copy / "models_genesis"
    shutil.copytree(src, bundles_copy / "zz_other")
    assert shared_id_drift(str(bundles_copy)) == []
    _edit(bundles_copy / "zz_other" / "configs" / "training.json",
          lambda c: c["network_def"].update(in_channels=2))
    _edit(bundles_copy / "zz_other" / "configs" / "train.json",
          lambda c: c["network_def"].update(in_channels=2))
    _edit(bundles_copy / "zz_other" / "configs" / "inference.json",
          lambda c: c["network_def"].update(in_channels=2))
    problems = shared_id_drift(str(bundles_copy))
    assert any(p.startswith("zz_other/") and "differs from models_genesis/" in p for p in problems), problems
    assert os.path.isdir(bundles_copy / "zz_other")
