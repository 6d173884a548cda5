"""The transfer comparison's pieces without training: plan, presets, split rules, fitted extraction, statistics."""

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data.extraction_options import ExtractionOptions, fitted_extraction
from genesis_monai.transfer import report
from genesis_monai.transfer.plan import TransferPlan, make_plan, preset_settings
from genesis_monai.transfer.splits import VolumeSplit, binary_label_entries, dataset_volume_split, write_stage_inputs
from genesis_monai.transfer.stages import dice, fresh_run_dir, stage_overrides

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundles", "models_genesis")


def test_presets_are_read_from_the_bundle_configs():
    demo, paper = preset_settings(BUNDLE, "demo"), preset_settings(BUNDLE, "paper")
    with open(os.path.join(BUNDLE, "configs", "train.json")) as f:
        caps = json.load(f)["demo_caps"]
    assert demo["width"] == caps["network_width"] and list(demo["patch_size"]) == caps["patch_size"]
    assert paper["width"] == 1.0 and paper["cube_shape"] == (64, 64, 32) and paper["patch_size"] == (64, 64, 32)
    plan, data = make_plan(BUNDLE, preset="paper", device="cpu")
    assert (plan.width, plan.device, plan.pretrain_optimizer) == (1.0, "cpu", None)  # published SGD
    assert data["volume_shape"] == (128, 128, 64)


def test_plan_budget_split_and_checks():
    plan = TransferPlan(budget_minutes=10, pretrain_fraction=0.3, finetune_fraction=0.4, seeds=(0, 1))
    assert plan.n_finetunes == 4
    assert plan.pretrain_seconds == pytest.approx(180.0) and plan.finetune_seconds == pytest.approx(60.0)
    assert plan.budget_warnings() == ()
    starved = plan.replace(pretrain_fraction=0.05)
    assert any("less than one fine-tune" in w for w in starved.budget_warnings())
    assert any("spread" in w for w in plan.replace(seeds=(3,)).budget_warnings())
    for bad, match in (({"pretrain_fraction": 0.7, "finetune_fraction": 0.4}, "sum"), ({"seeds": (1, 1)}, "distinct"),
                       ({"cube_shape": (30, 32, 16)}, "divisible"), ({"modality": "pet"}, "modality"),
                       ({"extraction": {"crop": (8, 8, 8)}}, "cube_shape"), ({"n_test": 0}, "n_test")):
        with pytest.raises(ValueError, match=match):
            TransferPlan(**bad)
    with pytest.raises(TypeError, match="unknown setting"):
        make_plan(BUNDLE, n_labelled=3)
    assert make_plan(BUNDLE, overrides={"network_def#width": 0.5})[0].width == 0.5


def test_stage_overrides_refuse_ids_the_configs_lack():
    plan = TransferPlan(overrides={"network_def#width": 0.125}, stage_overrides={"finetune": {"learning_rate": 3e-4}})
    fine = stage_overrides(plan, BUNDLE, "finetune", {"seed": 1})
    assert fine == {"seed": 1, "network_def#width": 0.125, "learning_rate": 3e-4}
    assert "learning_rate" not in stage_overrides(plan, BUNDLE, "pretrain", {})  # a stage override stays in its stage
    with pytest.raises(KeyError, match="did you mean 'learning_rate'"):
        stage_overrides(plan.replace(overrides={"lerning_rate": 1.0}), BUNDLE, "finetune", {})
    with pytest.raises(KeyError, match="inference.json defines no id 'n_labeled'"):
        stage_overrides(plan, BUNDLE, "inference", {"n_labeled": 2})


def test_fitted_extraction_fits_the_data():
    chest = fitted_extraction("ct", [(512, 512, 200), (512, 512, 300)], (64, 64, 32))
    assert chest == {"modality": "ct", "rule": "tissue", "border": (100, 100, 30)}  # the reference border fits
    brain = fitted_extraction("mri", [(200, 230, 190)], (64, 64, 32))
    assert brain["rule"] == "tissue" and brain["border"] == (33, 41, 30)
    small = fitted_extraction("ct", [(96, 96, 48), (128, 128, 64)], (32, 32, 16), foreground="lung")
    assert small["rule"] == "lung" and small["border"] == (15, 15, 7)
    ExtractionOptions.from_mapping(small, crop=(32, 32, 16))  # valid options
    with pytest.raises(ValueError, match="cannot hold"):
        fitted_extraction("ct", [(40, 40, 19)], (32, 32, 16))  # 16 + 3 look-ahead + 1 > 19
    with pytest.raises(ValueError, match="foreground"):
        fitted_extraction("ct", [(96, 96, 48)], (32, 32, 16), foreground="auto")


def _pair(tmp, name, values=(0, 1)):
    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4))
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[2:4, 2:4, 2:4] = values[-1]
    lab[5, 5, 5] = values[0]
    os.makedirs(os.path.join(tmp, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(tmp, "labelsTr"), exist_ok=True)
    nib.save(img, os.path.join(tmp, "imagesTr", name))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), os.path.join(tmp, "labelsTr", name))
    return {"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"}


def test_dataset_split_keeps_held_out_images_out_of_pretraining(tmp_path):
    data, unlabeled = str(tmp_path / "data"), str(tmp_path / "unlabeled")
    entries = [_pair(data, f"case_{i}.nii.gz") for i in range(8)]
    with open(os.path.join(data, "dataset.json"), "w") as f:
        json.dump({"training": entries[:6], "validation": entries[6:]}, f)
    shutil.copytree(os.path.join(data, "imagesTr"), unlabeled)  # copies: matched by name and size
    split = dataset_volume_split(data, unlabeled, n_labeled=2, n_val=2, n_test=3, seed=1)
    held = {os.path.basename(e["image"]) for e in split.validation + split.test}
    assert len(held) == 5 and len(split.excluded) == 5 and len(split.pool) == 3
    assert held.isdisjoint(os.path.basename(p) for p in split.pool)
    inputs = write_stage_inputs(split, str(tmp_path / "out"))
    linked = {os.path.realpath(os.path.join(inputs.pool_dir, n)) for n in os.listdir(inputs.pool_dir)}
    assert linked == {os.path.realpath(p) for p in split.pool}
    with open(inputs.datalist) as f:
        written = json.load(f)
    assert [e["image"] for e in written["test"]] == [e["image"] for e in split.test]
    with pytest.raises(ValueError, match="are needed"):
        dataset_volume_split(data, unlabeled, n_labeled=4, n_val=2, n_test=3)
    # a held-out volume in the pool is refused, whoever made the split
    bad = VolumeSplit(pool=split.pool + (split.test[0]["image"],), labeled=split.labeled,
                      validation=split.validation, test=split.test)
    with pytest.raises(ValueError, match="test volume and also in the pool"):
        bad.check()


def test_labels_other_than_0_1_become_binary_masks(tmp_path):
    entries = [_pair(str(tmp_path), "a.nii.gz", values=(0, 1)), _pair(str(tmp_path), "b.nii.gz", values=(1, 2))]
    entries = [{k: str(tmp_path / v) for k, v in e.items()} for e in entries]
    out, n = binary_label_entries(entries, str(tmp_path / "binary"))
    assert n == 1 and out[0] == entries[0] and out[1]["label"].endswith("b_binary.nii.gz")
    mask = np.asarray(nib.load(out[1]["label"]).dataobj)
    assert set(np.unique(mask)) == {0, 1} and mask.sum() == 9  # 8 voxels of value 2, one of value 1
    only_two, _ = binary_label_entries(entries[1:], str(tmp_path / "only2"), foreground=[2])
    assert np.asarray(nib.load(only_two[0]["label"]).dataobj).sum() == 8


def test_statistics_verdict_and_dice():
    runs = [{"seed": s, "best_val": v, "test_dice": t, "test_dice_per_case": [t], "epochs": 3, "iterations": 3,
             "seconds": 10.0, "inference_seconds": 1.0, "curve": [(1.0, 1, v)]}
            for s, v, t in ((0, 0.5, 0.4), (1, 0.7, 0.6))]
    pre = report.init_statistics(runs)
    assert pre["test_dice"] == pytest.approx(0.5) and pre["test_dice_spread"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert pre["test_dice_per_seed"] == [0.4, 0.6] and pre["seeds"] == [0, 1]
    scr = report.init_statistics([dict(r, test_dice=r["test_dice"] - 0.05) for r in runs])
    close = report.verdict({"pretrained": pre, "scratch": scr})
    assert close["difference"] == pytest.approx(0.05) and close["beats_by_more_than_spread"] is False
    far = report.verdict({"pretrained": pre, "scratch": report.init_statistics(
        [dict(r, test_dice=0.0) for r in runs])})
    assert far["beats_by_more_than_spread"] is True and "ahead by more than" in far["text"]
    untested = report.init_statistics([dict(r, test_dice=None) for r in runs])
    assert untested["test_dice"] is None
    assert report.verdict({"pretrained": untested, "scratch": untested})["difference"] is None
    assert dice(np.zeros(4), np.zeros(4)) == 1.0 and dice(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_run_folders_are_only_emptied_when_a_run_wrote_them(tmp_path):
    run = fresh_run_dir(str(tmp_path / "run"))
    open(os.path.join(run, "model.pt"), "w").close()
    assert os.listdir(fresh_run_dir(run)) == [".genesis_transfer_run"]  # an earlier run's files are replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not written by a transfer run"):
        fresh_run_dir(str(other))
    assert (other / "precious.txt").exists()


@pytest.mark.parametrize("command", [["demo", "--help"], ["benchmark", "transfer", "--help"]])
def test_help_prints_options_and_runs_nothing(tmp_path, command):
    out = subprocess.run([sys.executable, "-m", "genesis_monai", *command], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "budget_minutes" in out.stdout and "n_labeled" in out.stdout
    assert os.listdir(tmp_path) == []  # no data, no output folder
