"""SMART-Net bundle end to end on tiny head-CT phantoms: upstream learns every head, 2D->3D fine-tuning with gradual
unfreezing, whole-volume inference in the input geometry, and the Grad-CAM / t-SNE pictures."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_utils import copy_bundle, cpu_overrides, run_workflow, workflow

BUNDLE = "smart_net"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from genesis_monai.data.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("smart_net")
    data = str(root / "data")
    write_demo_dataset(data, phantom="head_ct", n_volumes=9, shape=(48, 48, 12))
    bundle = copy_bundle(BUNDLE, root / BUNDLE)
    return {"root": root, "data": data, "bundle": bundle}


def _ids(tiny, **extra):
    return cpu_overrides(bundle_root=tiny["bundle"], dataset_dir=tiny["data"], slice_size=32, network_width=0.125,
                         **extra)


def test_upstream_lowers_every_loss_term(tiny):
    from genesis_monai.bundles import bundle_parser

    wf = workflow(BUNDLE, ["training.json"], "train", **_ids(
        tiny, max_epochs=12, batch_size=8, slices_per_volume=4, learning_rate=0.002, sample_interval=100,
        ckpt_dir=os.path.join(tiny["bundle"], "models"), output_dir=str(tiny["root"] / "upstream")))
    wf.initialize()
    history = []
    trainer = wf.parser.get_parsed_content("train#trainer")
    loss = wf.parser.get_parsed_content("loss")
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: history.append(dict(loss.last_terms)))
    wf.run()
    wf.finalize()
    assert set(history[0]) == {"classification", "segmentation", "reconstruction", "consistency"}
    k = 3
    first = {t: np.mean([h[t] for h in history[:k]]) for t in history[0]}
    last = {t: np.mean([h[t] for h in history[-k:]]) for t in history[0]}
    for term in ("classification", "segmentation", "reconstruction"):
        assert last[term] < first[term], (term, first, last)
    ckpt = torch.load(os.path.join(tiny["bundle"], "models", "pretrained.pt"), weights_only=True)
    assert ckpt["provenance"]["method"] == "smart_net"
    assert ckpt["provenance"]["settings"]["pretexts"] == "cls+seg+rec"
    parser = bundle_parser(tiny["bundle"], "training.json", {"network_width": 0.125})
    parser.get_parsed_content("network_def", instantiate=True).load_state_dict(ckpt["model"], strict=True)
    samples = os.listdir(str(tiny["root"] / "upstream" / "samples"))
    assert samples and all(s.endswith(".png") for s in samples)


@pytest.mark.parametrize("pretexts", ["cls", "seg+rec"])
def test_pretext_ablations_train_and_log_only_their_heads(tiny, tmp_path, pretexts):
    wf = workflow(BUNDLE, ["training.json"], "train", **_ids(
        tiny, max_epochs=1, batch_size=8, slices_per_volume=1, pretexts=pretexts, sample_interval=100,
        ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "out")))
    run_workflow(wf)
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    assert ("val_auc" in metrics) == ("cls" in pretexts)
    assert ("val_dice" in metrics) == ("seg" in pretexts)
    assert ("val_rec_mae" in metrics) == ("rec" in pretexts)
    terms = set(wf.parser.get_parsed_content("loss").terms)
    assert "consistency" not in terms


def test_finetune_unfreezes_on_schedule_and_inference_keeps_the_geometry(tiny):
    # depends on pretrained.pt from the upstream test (module order); make one if run alone
    models = os.path.join(tiny["bundle"], "models")
    if not os.path.isfile(os.path.join(models, "pretrained.pt")):
        test_upstream_lowers_every_loss_term(tiny)
    pretrained = torch.load(os.path.join(models, "pretrained.pt"), weights_only=True)["model"]
    wf = workflow(BUNDLE, ["train.json"], "train", **_ids(
        tiny, epochs=3, frozen_epochs=1, unfreeze_every=1, output_dir=str(tiny["root"] / "finetune")))
    wf.initialize()
    net = wf.parser.get_parsed_content("network")
    enc = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("encoder.")}
    for k, v in enc.items():  # the encoder came from the upstream checkpoint
        torch.testing.assert_close(v, pretrained[k].to(v.dtype))
    wf.run()
    wf.finalize()
    after = net.state_dict()
    # frozen for 1 epoch, then layer4 (epoch 2), layer3 (epoch 3): layer1 and the stem never trained
    assert torch.equal(after["encoder.layer1.0.conv1.weight"], enc["encoder.layer1.0.conv1.weight"])
    assert torch.equal(after["encoder.conv1.weight"], enc["encoder.conv1.weight"])
    assert not torch.equal(after["encoder.layer4.0.conv1.weight"], enc["encoder.layer4.0.conv1.weight"])
    assert os.path.isfile(os.path.join(models, "model.pt"))

    out = str(tiny["root"] / "inference")
    run_workflow(workflow(BUNDLE, ["inference.json"], "infer", **_ids(tiny, output_dir=out)))
    test_images = json.load(open(os.path.join(tiny["data"], "dataset.json")))["test"]
    for entry in test_images:
        src = nib.load(os.path.join(tiny["data"], entry["image"]))
        name = os.path.basename(entry["image"]).replace(".nii.gz", "_seg.nii.gz")
        seg = nib.load(os.path.join(out, name))
        assert seg.shape == src.shape
        np.testing.assert_allclose(seg.affine, src.affine, atol=1e-5)
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
    report = json.load(open(os.path.join(out, "probabilities.json")))
    assert len(report["volumes"]) == len(test_images)
    for summary in report["volumes"].values():
        assert len(summary["slice_probabilities"]) == src.shape[2]
        assert summary["volume_probability"] == pytest.approx(max(summary["slice_probabilities"]), abs=1e-5)


def test_explain_writes_gradcam_and_tsne(tiny):
    from genesis_monai.explain import explain

    models = os.path.join(tiny["bundle"], "models")
    if not os.path.isfile(os.path.join(models, "pretrained.pt")):
        test_upstream_lowers_every_loss_term(tiny)
    out = str(tiny["root"] / "explain")
    written = explain(bundle=BUNDLE, bundle_dir=os.path.dirname(tiny["bundle"]), dataset_dir=tiny["data"],
                      output_dir=out, n_slices=4, overrides={"slice_size": 32})
    for key in ("gradcam", "tsne"):
        assert os.path.getsize(written[key]) > 1000
    assert len(written["gradcam_slices"]) == 4
    assert json.load(open(os.path.join(out, "explain.json")))["tsne_slices"] == written["tsne_slices"]
    with pytest.raises(FileNotFoundError, match="no upstream checkpoint"):
        explain(bundle=BUNDLE, bundle_dir=os.path.dirname(tiny["bundle"]), checkpoint=str(tiny["root"] / "nope.pt"))


def test_volume_classification_finetune_writes_its_model(tiny):
    models = os.path.join(tiny["bundle"], "models")
    if not os.path.isfile(os.path.join(models, "pretrained.pt")):
        test_upstream_lowers_every_loss_term(tiny)
    wf = workflow(BUNDLE, ["train_cls.json"], "train", **_ids(
        tiny, epochs=2, frozen_epochs=1, unfreeze_every=1, output_dir=str(tiny["root"] / "finetune_cls")))
    run_workflow(wf)
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    assert {"val_auc", "val_auc_f1", "val_auc_sensitivity", "val_auc_specificity"} <= set(metrics)
    state = torch.load(os.path.join(models, "model_cls.pt"), weights_only=True)
    assert any(k.startswith("LSTM.") for k in state) and any(k.startswith("encoder.") for k in state)
