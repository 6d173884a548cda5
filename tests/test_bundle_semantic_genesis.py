"""The Semantic Genesis bundle end to end on tiny volumes: discovery.json (auto-encoder, features, patterns) runs
from training.json when no patterns exist, pretraining on them lowers both loss terms, a rerun reuses them, and
the pretrained encoder-decoder fine-tunes (train.json) and segments (inference.json) with the input geometry.
The TransVW bundle has the same configs (tests/shared_ids.py SIBLINGS), so one bundle is run here."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_utils import copy_bundle, cpu_overrides, run_workflow, workflow, write_tiny_segmentation_set
from genesis_monai.data.semantic_pretraining import discovery_volumes, resolve_pattern_data

BUNDLE = "semantic_genesis"

DISCOVERY = {"n_classes": 3, "n_instances": 4, "n_instances_val": 1, "feature_shape": [16, 16, 8], "max_epochs": 2,
             "batch_size": 2, "network_width": 0.25, "pattern_options": {"border": [2, 2, 1], "rule": "off"}}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sg")
    data = write_tiny_segmentation_set(str(root / "data"), n=7, shape=(32, 32, 16))
    bundle = copy_bundle(BUNDLE, root / "bundle")
    history = {"restoration": [], "classification": []}
    wf = workflow(BUNDLE, ["training.json"], "train", **cpu_overrides(
        bundle_root=bundle, dataset_dir=data, ckpt_dir=os.path.join(bundle, "models"),
        output_dir=str(root / "out"), cube_shape=[16, 16, 8], batch_size=6, network_width=0.25, cls_classes=3,
        max_epochs=6, sample_interval=100, discovery_overrides={**DISCOVERY, "device": "$torch.device('cpu')"}))
    wf.initialize()
    from ignite.engine import Events

    trainer = wf.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        for term in history:
            history[term].append(float(engine.state.output[f"loss_{term}"]))

    wf.run()
    wf.finalize()
    return {"root": root, "data": data, "bundle": bundle, "history": history}


def test_training_runs_discovery_first_and_writes_the_reference_layout(pretrained):
    patterns = os.path.join(pretrained["data"], "patterns_16x16x8")
    names = set(os.listdir(patterns))
    assert {"train_data1_vwGen_ex_ref_fold1.0.npy", "train_data2_vwGen_ex_ref_fold1.0.npy",
            "train_data3_vwGen_ex_ref_fold1.0.npy", "val_data1_vwGen_ex_ref_fold1.0.npy", "datalist.json"} <= names
    assert os.path.isfile(os.path.join(pretrained["bundle"], "models", "autoencoder.pt"))
    labels = np.load(os.path.join(patterns, "train_label1_vwGen_ex_ref_fold1.0.npy")).ravel()
    assert sorted(set(labels.astype(int))) == [0, 1, 2] and len(labels) == 3 * 4


def test_pretraining_lowers_both_loss_terms_and_records_provenance(pretrained):
    for term, values in pretrained["history"].items():
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        assert last < first, f"{term} loss did not fall: {first:.4f} -> {last:.4f}"
    ckpt = torch.load(os.path.join(pretrained["bundle"], "models", "pretrained.pt"), weights_only=True)
    assert "clc_out.fc1.weight" in ckpt["model"] and ckpt["model"]["clc_out.fc1.weight"].shape[0] == 3
    prov = ckpt["provenance"]
    assert prov["method"] == BUNDLE
    assert prov["settings"]["classification_weight"] == 0.01 and prov["settings"]["restore_augmented"] is False
    assert prov["degradation"]["mode"] == "one_of" and "RandElasticInPlane" in json.dumps(prov["augmentation"])


def test_a_rerun_reuses_the_discovered_patterns(pretrained, caplog):
    patterns = os.path.join(pretrained["data"], "patterns_16x16x8")
    before = {n: os.path.getmtime(os.path.join(patterns, n)) for n in os.listdir(patterns)}
    with caplog.at_level("INFO"):
        found = resolve_pattern_data(pretrained["data"], bundle_root=pretrained["bundle"], cube_shape=(16, 16, 8))
    assert found["training"] and found["validation"]
    assert "discovered earlier" in caplog.text
    assert before == {n: os.path.getmtime(os.path.join(patterns, n)) for n in os.listdir(patterns)}


def test_pretrained_encoder_decoder_fine_tunes_and_segments_with_input_geometry(pretrained):
    bundle, data, root = pretrained["bundle"], pretrained["data"], pretrained["root"]
    common = cpu_overrides(bundle_root=bundle, dataset_dir=data, ckpt_dir=os.path.join(bundle, "models"),
                           network_width=0.25, patch_size=[16, 16, 8])
    run_workflow(workflow(BUNDLE, ["train.json"], "train", **common, epochs=1, output_dir=str(root / "ft")))
    assert os.path.isfile(os.path.join(bundle, "models", "model.pt"))
    out = root / "masks"
    run_workflow(workflow(BUNDLE, ["inference.json"], "infer", **common, output_dir=str(out)))
    with open(os.path.join(data, "dataset.json")) as f:
        test = json.load(f)["test"]
    for entry in test:
        img = nib.load(os.path.join(data, entry["image"]))
        stem = os.path.basename(entry["image"]).split(".nii")[0]
        mask = nib.load(os.path.join(str(out), f"{stem}_seg.nii.gz"))
        assert mask.shape[:3] == img.shape[:3]
        np.testing.assert_allclose(mask.affine, img.affine, atol=1e-4)


def test_given_pattern_files_are_used_as_they_are(tmp_path):
    from genesis_monai.data import write_pattern_files

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_pattern_files(str(tmp_path), split, 1, 1, rng.random((6, 8, 8, 8)), np.repeat([0, 1], 3))
    found = resolve_pattern_data(str(tmp_path), bundle_root="/nonexistent")  # no discovery: the files are used
    assert [os.path.basename(r["image"]) for r in found["training"]] == ["train_data1_vwGen_ex_ref_fold1.0.npy"]


def test_discovery_volumes_need_training_and_validation(tmp_path):
    data = write_tiny_segmentation_set(str(tmp_path / "d"), n=4, shape=(16, 16, 16))
    vols = discovery_volumes(data)
    assert len(vols["training"]) == 2 and len(vols["validation"]) == 1  # the test image stays unseen
    with open(os.path.join(data, "dataset.json"), "w") as f:
        json.dump({"training": [{"image": "imagesTr/case_0.nii.gz"}]}, f)
    with pytest.raises(ValueError, match="both 'training' and 'validation'"):
        discovery_volumes(data)
