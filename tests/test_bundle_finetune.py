"""The Models Genesis bundle's fine-tuning, inference and evaluation configs, run for real on tiny data."""

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from genesis_monai.networks import UNet3D
from bundle_utils import cpu_overrides, run_workflow, workflow, write_tiny_segmentation_set

BUNDLE = "models_genesis"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    data = write_tiny_segmentation_set(str(root / "data"))
    pretrained = str(root / "pretrained.pt")
    torch.manual_seed(0)
    torch.save({"model": UNet3D().state_dict(), "provenance": {"method": "models_genesis"}}, pretrained)
    ckpt = str(root / "models")
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=ckpt, output_dir=str(root / "out"), patch_size=[16, 16, 8], num_samples=2,
        epochs=2, val_interval=1, pretrained_path=pretrained))
    run_workflow(wf)
    return {"root": root, "data": data, "ckpt": ckpt, "workflow": wf}


def test_finetune_writes_best_model_and_validates(finetuned):
    path = os.path.join(finetuned["ckpt"], "model.pt")
    assert os.path.isfile(path)
    state = torch.load(path, weights_only=True)
    UNet3D().load_state_dict(state, strict=True)  # a flat state dict, as MONAI Label / monai.bundle.load expect
    evaluator = finetuned["workflow"].parser.get_parsed_content("validate#evaluator")
    assert 0.0 <= evaluator.state.metrics["val_mean_dice"] <= 1.0


def test_inference_writes_masks_with_input_geometry(finetuned):
    out = str(finetuned["root"] / "masks")
    wf = workflow(BUNDLE, ["inference.json"], "infer", **cpu_overrides(
        dataset_dir=finetuned["data"], ckpt_dir=finetuned["ckpt"], output_dir=out, patch_size=[16, 16, 8]))
    run_workflow(wf)
    image = nib.load(os.path.join(finetuned["data"], "imagesTr", "case_3.nii.gz"))
    mask = nib.load(os.path.join(out, "case_3_seg.nii.gz"))
    assert mask.shape[:3] == image.shape
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_evaluate_computes_dice_against_labels(finetuned):
    out = str(finetuned["root"] / "eval")
    wf = workflow(BUNDLE, ["train.json", "evaluate.json"], "train", **cpu_overrides(
        dataset_dir=finetuned["data"], ckpt_dir=finetuned["ckpt"], output_dir=out, patch_size=[16, 16, 8]))
    run_workflow(wf)
    assert os.path.isfile(os.path.join(out, "val_mean_dice_raw.csv"))
    assert 0.0 <= wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"] <= 1.0


def test_missing_pretrained_weights_is_an_error_unless_from_scratch(tmp_path):
    data = write_tiny_segmentation_set(str(tmp_path / "data"))
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(tmp_path / "m"), pretrained_path=str(tmp_path / "nope.pt")))
    wf.initialize()
    with pytest.raises(RuntimeError) as err:
        wf.parser.get_parsed_content("network")
    # MONAI wraps the error; the user sees ours as its cause in the traceback
    assert isinstance(err.value.__cause__, FileNotFoundError)
    assert "nope.pt" in str(err.value.__cause__) and "from_scratch=true" in str(err.value.__cause__)
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(tmp_path / "m"), pretrained_path=str(tmp_path / "nope.pt"), from_scratch=True))
    wf.initialize()
    assert isinstance(wf.parser.get_parsed_content("network"), UNet3D)


def test_missing_dataset_dir_names_it(tmp_path):
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(dataset_dir=str(tmp_path / "absent"), from_scratch=True))
    wf.initialize()
    with pytest.raises(RuntimeError) as err:
        wf.parser.get_parsed_content("train#dataset")
    assert "absent" in str(err.value.__cause__) and "does not exist" in str(err.value.__cause__)
