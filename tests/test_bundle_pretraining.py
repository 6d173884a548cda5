"""configs/training.json run for real on tiny cube files: provenance built from what ran, the degradation
kernel as a config id, any MONAI network pretrained and then fine-tuned, no handler warnings."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from bundle_utils import cpu_overrides, run_workflow, workflow, write_tiny_segmentation_set

BUNDLE = "models_genesis"
TINY_BASIC_UNET = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 3, "in_channels": 1,
                   "out_channels": 1, "features": [4, 4, 8, 16, 32, 4]}


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubes")
    rng = np.random.default_rng(0)
    for fold in (0, 5):
        # smooth blobs: something a tiny network can learn to restore in a few epochs
        base = rng.random((32, 4, 4, 4), dtype=np.float32)
        cubes = np.kron(base, np.ones((1, 4, 4, 4), np.float32))
        np.save(root / f"bat_32_s_64x64x32_{fold}.npy", cubes)
    return str(root)


@pytest.fixture(scope="module")
def cube_dir_32(tmp_path_factory):
    """32^3 cubes: BasicUNet pools four times and its instance norm needs more than one voxel at the bottom."""
    root = tmp_path_factory.mktemp("cubes32")
    rng = np.random.default_rng(1)
    for fold in (0, 5):
        np.save(root / f"bat_32_s_64x64x32_{fold}.npy",
                np.kron(rng.random((4, 4, 4, 4), dtype=np.float32), np.ones((1, 8, 8, 8), np.float32)))
    return str(root)


def _pretrain(tmp_path, cube_dir, cube_shape=(16, 16, 16), **overrides):
    wf = workflow(BUNDLE, ["training.json"], "train", **cpu_overrides(
        dataset_dir=cube_dir, cube_shape=list(cube_shape), ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "out"), batch_size=4, network_width=0.25, **overrides))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_workflow(wf)
    return wf, caught


def test_provenance_records_the_overridden_optimiser_and_what_ran(tmp_path, cube_dir):
    wf, caught = _pretrain(tmp_path, cube_dir, max_epochs=2, degradation_kernel="torch",
                           optimizer={"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-3})
    # a normal run prints no "ignoring non-scalar output" from the evaluators' Stats/TensorBoard handlers
    assert not [str(w.message) for w in caught if "non-scalar" in str(w.message)]
    ckpt = torch.load(tmp_path / "models" / "pretrained.pt", weights_only=True)
    prov = ckpt["provenance"]
    assert prov["optimizer"]["class"] == "torch.optim.adam.Adam"
    assert prov["optimizer"]["hyperparameters"]["lr"] == pytest.approx(1e-3)
    assert "momentum" not in prov["optimizer"]["hyperparameters"]  # nothing left of the default SGD
    assert prov["lr_scheduler"]["class"] == "torch.optim.lr_scheduler.StepLR"
    assert prov["lr_scheduler"]["settings"]["step_size"] == 40
    deg = prov["degradation"]
    assert deg["kernel"] == "torch" and deg["kernel_used"] == "torch" and deg["kernel_reason"]
    assert deg["n_blocks"] == 10_000 and deg["flip_rate"] == 0.4 and deg["mode"] == "sequential"
    assert prov["network"]["class"] == "genesis_monai.networks.unet3d.UNet3D"
    assert prov["network"]["args"]["width"] == 0.25
    assert prov["loss"]["terms"]["restoration"]["loss"] == "torch.nn.modules.loss.MSELoss"
    assert prov["input_shape"] == [4, 1, 16, 16, 16]
    assert prov["training_data"]["n_samples"] == 32 and prov["training_data"]["files"][0].endswith("_0.npy")
    assert prov["validation_data"]["files"][0].endswith("_5.npy")
    assert prov["epochs_completed"] >= 1 and prov["software"]["monai"]
    # the checkpoint holds the bare network (no wrapper prefix) and loads strictly
    from genesis_monai.networks import UNet3D

    UNet3D(width=0.25).load_state_dict(ckpt["model"], strict=True)


def test_default_kernel_is_recorded(tmp_path, cube_dir):
    from genesis_monai.transforms import cpu_kernel

    _pretrain(tmp_path, cube_dir, max_epochs=1)
    deg = torch.load(tmp_path / "models" / "pretrained.pt", weights_only=True)["provenance"]["degradation"]
    assert deg["kernel"] == "auto"
    assert deg["kernel_used"] == ("c" if cpu_kernel.available() else "torch")


def test_restoration_pretraining_lowers_validation_mse(tmp_path, cube_dir):
    from ignite.engine import Events

    wf = workflow(BUNDLE, ["training.json"], "train", **cpu_overrides(
        dataset_dir=cube_dir, cube_shape=[16, 16, 16], ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "out"), batch_size=4, network_width=0.25, max_epochs=8, sample_interval=1,
        optimizer={"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 3e-3}))
    wf.initialize()
    curve = []
    wf.parser.get_parsed_content("validate#evaluator").add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: curve.append(e.state.metrics["val_mse"]))
    wf.run()
    wf.finalize()
    assert len(curve) == 8 and min(curve[-3:]) < curve[0], curve
    assert sorted(os.listdir(tmp_path / "out" / "samples"))[0] == "samples_epoch0001.png"


def test_any_monai_network_pretrains_then_fine_tunes(tmp_path, cube_dir_32):
    """A tiny BasicUNet (logits: a sigmoid is added for restoration) pretrains, then train.json fine-tunes it."""
    from monai.networks.nets import BasicUNet

    _pretrain(tmp_path, cube_dir_32, cube_shape=(32, 32, 32), size_divisor=16, max_epochs=2,
              network_def=TINY_BASIC_UNET,
              optimizer={"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-3})
    ckpt = torch.load(tmp_path / "models" / "pretrained.pt", weights_only=True)
    assert ckpt["provenance"]["network"]["class"] == "monai.networks.nets.basic_unet.BasicUNet"
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=1, features=(4, 4, 8, 16, 32, 4))
    net.load_state_dict(ckpt["model"], strict=True)  # the network's own keys, no wrapper prefix

    data = write_tiny_segmentation_set(str(tmp_path / "seg"), shape=(32, 32, 32))
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(tmp_path / "ft"), output_dir=str(tmp_path / "ft_out"), patch_size=[32, 32, 32],
        num_samples=1, epochs=2, val_interval=1, network_def=TINY_BASIC_UNET,
        pretrained_path=str(tmp_path / "models" / "pretrained.pt")))
    wf.initialize()
    network = wf.parser.get_parsed_content("network")
    for k, v in network.state_dict().items():  # the pretrained weights were loaded, loudly and completely
        torch.testing.assert_close(v, ckpt["model"][k])
    assert wf.parser.get_parsed_content("apply_sigmoid") is True  # logits: Dice and thresholds get a sigmoid
    wf.run()
    wf.finalize()
    assert os.path.isfile(tmp_path / "ft" / "model.pt")
    # a UNet3D checkpoint does not silently load into the BasicUNet
    wf = workflow(BUNDLE, ["train.json"], "train", **cpu_overrides(
        dataset_dir=data, ckpt_dir=str(tmp_path / "ft2"), network_def=TINY_BASIC_UNET,
        pretrained_path=str(tmp_path / "unet3d.pt")))
    from genesis_monai.networks import UNet3D

    torch.save({"model": UNet3D(width=0.25).state_dict()}, tmp_path / "unet3d.pt")
    wf.initialize()
    with pytest.raises(RuntimeError) as err:
        wf.parser.get_parsed_content("network")
    assert "BasicUNet" in str(err.value.__cause__)


def test_demo_caps_are_visible_ids_and_logged(tmp_path, caplog):
    """On the demo data set the caps come from the 'demo_caps' id, are printed, and can be switched off."""
    import json
    import logging

    from monai.bundle import ConfigParser

    from bundle_utils import BUNDLES_DIR

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "dataset.json").write_text(json.dumps({"genesis_demo": {}, "training": []}))
    parser = ConfigParser()
    parser.read_config(os.path.join(BUNDLES_DIR, BUNDLE, "configs", "training.json"))
    parser["dataset_dir"] = str(demo)
    caps = parser.get_parsed_content("demo_caps")
    assert parser.get_parsed_content("use_demo_caps") is True
    assert parser.get_parsed_content("network_def").width == caps["network_width"]
    assert parser.get_parsed_content("max_epochs") == caps["pretraining_max_epochs"]
    assert parser.get_parsed_content("cube_shape") == caps["cube_shape"]
    from genesis_monai.engines import log_demo_caps

    with caplog.at_level(logging.WARNING):
        log_demo_caps(True, caps, str(demo))
    assert "demo caps in force" in caplog.text and "network_width=0.25" in caplog.text
    parser["use_demo_caps"] = False
    parser.parse()
    assert parser.get_parsed_content("network_def").width == 1.0
    assert parser.get_parsed_content("max_epochs") == 10000 and parser.get_parsed_content("cube_shape") == [64, 64, 32]
