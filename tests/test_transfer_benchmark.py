"""End to end: ``benchmark transfer`` on a tiny Decathlon-style data set, and the demo's own split, tiny budgets.

Small volumes (48x48x24), a tiny network (width 1/16) and a budget of seconds: the figures mean
nothing here; the test checks that every stage runs through the bundle configs, that held-out volumes
stay out of pretraining and fine-tuning, and that the table and results.json carry their fields.
"""

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data.demo import write_demo_dataset

TINY = dict(width=1 / 16, cube_shape=(16, 16, 8), patch_size=(16, 16, 8), budget_minutes=0.4,
            pretrain_fraction=0.25, finetune_fraction=0.4, val_interval=1, cubes_per_volume=4, seeds=(0, 1),
            device="cpu", quiet=True)


def _tiny_dataset(root):
    """10 labeled chest phantoms (one label with value 2 for 'nodule'), and an 'unlabeled' folder copying all images."""
    data = os.path.join(root, "task")
    write_demo_dataset(data, n_volumes=10, shape=(48, 48, 24), spacing=(20 / 3, 20 / 3, 40 / 3), seed=3)
    with open(os.path.join(data, "dataset.json")) as f:
        content = json.load(f)
    entries = content["training"] + content["validation"] + content["test"]
    lab_path = os.path.join(data, entries[0]["label"])
    lab = nib.load(lab_path)
    nib.save(nib.Nifti1Image((np.asarray(lab.dataobj) * 2).astype(np.uint8), lab.affine), lab_path)
    # a plain Decathlon datalist: no demo marker, so nothing runs at demo caps by accident
    with open(os.path.join(data, "dataset.json"), "w") as f:
        json.dump({"name": "tiny", "training": entries}, f)
    unlabeled = os.path.join(root, "unlabeled")
    shutil.copytree(os.path.join(data, "imagesTr"), unlabeled)
    return data, unlabeled


def test_benchmark_transfer_end_to_end(tmp_path, capsys):
    from genesis_monai.benchmarks import run_benchmark

    data, unlabeled = _tiny_dataset(str(tmp_path))
    out = str(tmp_path / "bench")
    run_benchmark("transfer", dataset_dir=data, unlabeled_dir=unlabeled, n_labeled=2, n_val=2, n_test=4,
                  output_dir=out, preset="demo", **{k: v for k, v in TINY.items() if k != "quiet"})
    table = capsys.readouterr().out
    with open(os.path.join(out, "results.json")) as f:
        summary = json.load(f)

    # the table, at a glance
    for text in ("pretrained", "scratch", "test Dice (mean ± sd)", "per seed (0, 1)", "epochs", "fine-tune s",
                 "seed spread", "2 labeled for fine-tuning, 2 validation, 4 test (held out of both)"):
        assert text in table
    res = summary["results"]
    for name in ("pretrained", "scratch"):
        r = res[name]
        assert 0.0 <= r["test_dice"] <= 1.0 and r["test_dice_spread"] >= 0.0
        assert r["test_dice"] == pytest.approx(np.mean(r["test_dice_per_seed"]))
        assert r["seeds"] == [0, 1] and len(r["test_dice_per_seed"]) == 2
        assert all(len(cases) == 4 for cases in r["test_dice_per_case"])
        assert all(e >= 1 for e in r["epochs"]) and all(s > 0 for s in r["finetune_seconds"])
        assert all(len(c) >= 1 for c in r["val_curves"])  # validation Dice against time, every seed
    assert summary["verdict"]["test"]["difference"] == pytest.approx(res["pretrained"]["test_dice"]
                                                                     - res["scratch"]["test_dice"])
    for key in ("validation_curves", "pretraining_curve", "test_overlay", "degradation_montage"):
        assert os.path.getsize(summary["pictures"][key]) > 1000
    # the semi-supervised setting held: held-out images neither pretrained on nor fine-tuned on
    counts = summary["data"]["counts"]
    assert counts == {"pool": 4, "labeled": 2, "validation": 2, "test": 4, "excluded_from_pool": 6}
    held = {os.path.basename(p) for p in summary["data"]["validation"] + summary["data"]["test"]}
    pool = {os.path.basename(os.path.realpath(os.path.join(out, "pool", n))) for n in os.listdir(os.path.join(out, "pool"))}
    labeled = {os.path.basename(p) for p in summary["data"]["labeled"]}
    assert len(pool) == 4 and held.isdisjoint(pool) and held.isdisjoint(labeled)
    # cube settings fitted to 48x48x24 volumes, not LUNA16's rule and borders
    assert summary["data"]["extraction"]["rule"] == "tissue" and summary["data"]["extraction"]["border"] == [7, 7, 3]
    # the width went through the configs: the pretrained checkpoint holds the tiny network
    assert summary["plan"]["width"] == pytest.approx(1 / 16)
    assert summary["data"]["relabeled"] in (0, 1)


def test_demo_split_and_validation_only_mode(tmp_path):
    from genesis_monai.transfer import run_demo

    summary = run_demo(output_dir=str(tmp_path / "demo"), n_volumes=8, volume_shape=(48, 48, 24),
                       volume_spacing=(20 / 3, 20 / 3, 40 / 3), n_labeled=2, n_val=2, n_test=2,
                       evaluate_test=False, extraction={"border": (4, 4, 2)}, **TINY)
    counts = summary["data"]["counts"]
    assert counts["pool"] == 4 and counts["test"] == 2
    test = {os.path.basename(p) for p in summary["data"]["test"]}
    assert test == {"demo_006.nii.gz", "demo_007.nii.gz"}  # the last volumes are held out
    pool_dir = os.path.join(str(tmp_path / "demo"), "pool")
    assert test.isdisjoint(os.path.basename(os.path.realpath(os.path.join(pool_dir, n))) for n in os.listdir(pool_dir))
    for name in ("pretrained", "scratch"):
        assert summary["results"][name]["test_dice"] is None  # not measured while choosing settings
        assert summary["results"][name]["best_val_dice"] is not None
    assert "test_overlay" not in summary["pictures"]
    assert summary["verdict"]["test"]["difference"] is None and "n/a" in summary["table"]
