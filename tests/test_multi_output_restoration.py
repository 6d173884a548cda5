"""The restoration engine with a multi-output network (restoration + class logits, as Semantic Genesis/TransVW),
the named multi-task loss, per-term logging, and the object descriptions provenance is built from."""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch
from torch import nn

from genesis_monai.engines import (CollapseDetector, LossTermsHandler, PrepareDegradedBatch, Provenance,
                                   RestorationSampleSaver, pred_target_transform, scalars_transform, select_output)
from genesis_monai.engines.provenance import describe_network, describe_optimizer, describe_scheduler
from genesis_monai.losses import LossTerm, MultiTaskLoss


class TinyYNet(nn.Module):
    """(restored in [0, 1], class logits) from a (N, 1, 8, 8, 8) batch."""

    def __init__(self, n_class: int = 3):
        super().__init__()
        self.n_class = n_class
        self.body = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 3, padding=1))
        self.head = nn.Linear(1, n_class)

    def forward(self, x):
        rec = torch.sigmoid(self.body(x))
        logits = self.head(rec.mean(dim=(2, 3, 4)))
        return rec, logits


def blur_degrade(x, generator=None):
    noise = torch.rand(x.shape, generator=generator, device=x.device)
    return (0.5 * x + 0.5 * noise), x.clone()


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    cubes = torch.rand(n, 1, 8, 8, 8, generator=g)
    labels = torch.arange(n) % 3
    # each class has its own brightness so the head can learn it
    cubes = (cubes * 0.3 + labels.view(n, 1, 1, 1, 1) * 0.3).clamp(0, 1)
    return [{"image": cubes[i:i + 4], "label": labels[i:i + 4]} for i in range(0, n, 4)]


def test_select_output_rules_and_errors():
    pred = (torch.zeros(1), torch.ones(1))
    assert select_output(pred, 1) is pred[1]
    assert select_output({"a": 1}, "a") == 1
    assert select_output(pred, None) is pred
    with pytest.raises(IndexError, match="out of range"):
        select_output(pred, 2)
    with pytest.raises(IndexError, match="not a tuple"):
        select_output(torch.zeros(1), 0)
    with pytest.raises(KeyError, match="no key 'b'"):
        select_output({"a": 1}, "b")


def test_multi_task_loss_is_the_weighted_sum_of_named_terms():
    pred = (torch.full((2, 1, 4, 4, 4), 0.5), torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    target = {"restoration": torch.zeros(2, 1, 4, 4, 4), "class": torch.tensor([0, 1])}
    loss = MultiTaskLoss({
        "restoration": {"loss": nn.MSELoss(), "weight": 1.0, "pred_key": 0, "target_key": "restoration"},
        "classification": LossTerm(nn.CrossEntropyLoss(), weight=0.01, pred_key=1, target_key="class"),
    })
    total = loss(pred, target)
    mse = 0.25
    ce = float(nn.CrossEntropyLoss()(pred[1], target["class"]))
    assert loss.last_terms == pytest.approx({"restoration": mse, "classification": ce})
    assert float(total) == pytest.approx(mse + 0.01 * ce)
    assert loss.describe()["terms"]["classification"] == {"loss": "torch.nn.modules.loss.CrossEntropyLoss", "weight": 0.01,
                                                 "pred_key": 1, "target_key": "class"}
    with pytest.raises(ValueError, match="identifier"):
        MultiTaskLoss({"bad name": {"loss": nn.MSELoss()}})
    with pytest.raises(ValueError, match="expected keys"):
        MultiTaskLoss({"rec": {"loss": nn.MSELoss(), "wieght": 2}})
    with pytest.raises(ValueError, match="at least one"):
        MultiTaskLoss({})


def test_prepare_batch_passes_extra_targets_through():
    prep = PrepareDegradedBatch(blur_degrade, extra_targets={"class": "label"})
    batch = _data()[0]
    degraded, targets = prep(batch, device="cpu")
    assert set(targets) == {"restoration", "class"}
    torch.testing.assert_close(targets["restoration"], batch["image"])
    assert torch.equal(targets["class"], batch["label"])
    with pytest.raises(KeyError, match="extra targets"):
        prep({"image": batch["image"]})
    with pytest.raises(ValueError, match="restoration"):
        PrepareDegradedBatch(blur_degrade, extra_targets={"restoration": "label"})


def test_restoration_engine_trains_a_two_output_network_and_logs_each_term(tmp_path):
    from ignite.metrics import MeanSquaredError
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.handlers import StatsHandler, ValidationHandler

    # MONAI's StatsHandler logger does not propagate to the root logger: listen to it directly
    records = []
    listener = logging.Handler(level=logging.INFO)
    listener.emit = lambda r: records.append(r.getMessage())
    logging.getLogger("monai.handlers.StatsHandler").addHandler(listener)
    torch.manual_seed(0)
    net = TinyYNet()
    loss = MultiTaskLoss({
        "restoration": {"loss": nn.MSELoss(), "weight": 1.0, "pred_key": 0, "target_key": "restoration"},
        "classification": {"loss": nn.CrossEntropyLoss(), "weight": 0.5, "pred_key": 1, "target_key": "class"},
    })
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    detector = CollapseDetector(warmup_epochs=100, pred_key=0, target_key="restoration")
    saver = RestorationSampleSaver(str(tmp_path / "samples"), interval=1, n=2, pred_key=0, target_key="restoration")
    val_prep = PrepareDegradedBatch(blur_degrade, seed=1, extra_targets={"class": "label"})
    evaluator = SupervisedEvaluator(
        device="cpu", val_data_loader=_data(), network=net, prepare_batch=val_prep, decollate=False,
        key_val_metric={"val_mse": MeanSquaredError(output_transform=pred_target_transform(0, "restoration"))},
        val_handlers=[val_prep, detector, saver, StatsHandler(iteration_log=False, output_transform=lambda x: None)])
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=15, train_data_loader=_data(), network=net, optimizer=opt, loss_function=loss,
        prepare_batch=PrepareDegradedBatch(blur_degrade, extra_targets={"class": "label"}), decollate=False,
        train_handlers=[ValidationHandler(validator=evaluator, interval=1, epoch_level=True), LossTermsHandler(loss),
                        StatsHandler(tag_name="train_loss", output_transform=scalars_transform("loss"))])
    val_mse = []
    from ignite.engine import Events

    evaluator.add_event_handler(Events.COMPLETED, lambda e: val_mse.append(e.state.metrics["val_mse"]))
    terms = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: terms.append((e.state.output["loss_restoration"],
                                                      e.state.output["loss_classification"])))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run()
    assert not [w for w in caught if "non-scalar" in str(w.message)], [str(w.message) for w in caught]
    logging.getLogger("monai.handlers.StatsHandler").removeHandler(listener)
    text = "\n".join(records)
    assert "loss_restoration" in text and "loss_classification" in text
    assert val_mse[-1] < val_mse[0]  # restoration learned through the named output
    assert terms[-1][1] < terms[0][1]  # classification learned too
    assert "output_std" in evaluator.state.metrics and not detector.collapsed
    assert saver.saved and os.path.isfile(saver.saved[0])


def test_describe_network_optimizer_scheduler():
    from monai.networks.nets import BasicUNet

    from genesis_monai.networks import UNet3D

    net = UNet3D(width=0.25)
    d = describe_network(net)
    assert d["class"] == "genesis_monai.networks.unet3d.UNet3D"
    assert d["args"]["width"] == 0.25 and d["parameters"] == sum(p.numel() for p in net.parameters())
    assert describe_network(UNet3D(width=0.25))["architecture_sha256"] == d["architecture_sha256"]
    assert describe_network(UNet3D(width=0.5))["architecture_sha256"] != d["architecture_sha256"]
    b = describe_network(BasicUNet(spatial_dims=3, in_channels=1, out_channels=1, features=(4, 4, 8, 16, 32, 4)))
    assert b["class"] == "monai.networks.nets.basic_unet.BasicUNet" and b["parameters"] > 0
    # wrappers (DDP, compile, the sigmoid wrapper) are described by the network inside
    from genesis_monai.networks.output_activation import WithSigmoid

    assert describe_network(WithSigmoid(net))["class"] == d["class"]
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    od = describe_optimizer(opt)
    assert od["class"] == "torch.optim.sgd.SGD" and od["hyperparameters"]["momentum"] == 0.9
    assert od["current_lr"] == [0.5]
    sd = describe_scheduler(torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.5))
    assert sd["class"].endswith("StepLR") and sd["settings"]["step_size"] == 40 and sd["settings"]["gamma"] == 0.5


def test_provenance_is_read_from_the_objects_at_save_time():
    net = TinyYNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    prov = Provenance("semantic_genesis", network=net, optimizer=opt)
    assert prov.state_dict()["optimizer"]["current_lr"] == [1e-3]
    opt.param_groups[0]["lr"] = 5e-4  # e.g. a scheduler step
    state = prov.state_dict()
    assert state["optimizer"]["current_lr"] == [5e-4] and state["optimizer"]["class"] == "torch.optim.adam.Adam"
    assert state["network"]["args"] == {"n_class": 3}
    assert set(state["software"]) >= {"genesis_monai", "torch", "monai", "ignite", "numpy", "python"}


class _Shift:
    """A stand-in augmentation with a seeded draw: adds one random constant per call."""

    def __call__(self, x, generator=None):
        return x + torch.rand((), generator=generator, device=x.device)


def test_augmentation_before_degradation_and_the_target_it_restores():
    x = torch.rand(2, 1, 4, 4, 4)
    batch = {"image": x, "label": torch.tensor([0, 1])}
    calls = []

    def degrade(images, generator=None):
        calls.append(images.clone())
        return images * 0.5, images.clone()

    quirk = PrepareDegradedBatch(degrade, augment=_Shift(), seed=3, extra_targets={"class": "label"})
    degraded, targets = quirk(batch)
    augmented = calls[-1]
    assert not torch.allclose(augmented, x), "the degradation sees the augmented cube"
    torch.testing.assert_close(degraded, augmented * 0.5)
    torch.testing.assert_close(targets["restoration"], x)  # the reference: restore the un-augmented cube
    assert targets["class"].tolist() == [0, 1]

    fixed = PrepareDegradedBatch(degrade, augment=_Shift(), seed=3, restore_augmented=True)
    _, target = fixed(batch)
    torch.testing.assert_close(target, calls[-1])  # the fixed variant: restore the augmented cube


def test_augmentation_with_flips_must_restore_the_augmented_cube():
    from genesis_monai.transforms import GenesisDegrade

    with pytest.raises(ValueError, match="flip_rate"):
        PrepareDegradedBatch(GenesisDegrade(flip_rate=0.4), augment=_Shift())
    PrepareDegradedBatch(GenesisDegrade(flip_rate=0.4), augment=_Shift(), restore_augmented=True)
    PrepareDegradedBatch(GenesisDegrade.from_preset("semantic_genesis"), augment=_Shift())
