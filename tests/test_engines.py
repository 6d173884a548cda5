import logging
import os
import time

import pytest
import torch
from ignite.engine import Engine, Events

from genesis_monai.engines import (
    CollapseDetector,
    EpochTimeBudget,
    PrepareDegradedBatch,
    Provenance,
)


def noisy_degrade(x, generator=None):
    noise = torch.rand(x.shape, generator=generator, device=x.device)
    return (x + noise) / 2, x.clone()


def test_prepare_batch_degrades_on_device_and_reseeds():
    batch = {"image": torch.rand(3, 1, 8, 8, 8)}
    prep = PrepareDegradedBatch(noisy_degrade, seed=7)
    a, target = prep(batch, device="cpu")
    b, _ = prep(batch, device="cpu")
    assert not torch.equal(a, b)  # the generator advances within a validation run
    prep.reset()
    c, _ = prep(batch, device="cpu")
    torch.testing.assert_close(a, c)  # the next validation run repeats the same degradations
    torch.testing.assert_close(target, batch["image"])
    with pytest.raises(KeyError, match="no key 'image'"):
        prep({"img": batch["image"]})


def test_prepare_batch_reseeds_on_epoch_start():
    prep = PrepareDegradedBatch(noisy_degrade, seed=3)
    outputs = []
    engine = Engine(lambda e, b: outputs.append(prep(b)[0]))
    prep.attach(engine)
    data = [{"image": torch.rand(2, 1, 8, 8, 8)}]
    engine.run(data, max_epochs=2)
    torch.testing.assert_close(outputs[0], outputs[1])


def _run_monitor(pred_fn, epochs=3):
    target = torch.rand(4, 1, 8, 8, 8)
    det = CollapseDetector(warmup_epochs=1)
    engine = Engine(lambda e, b: {"image": b, "pred": pred_fn(b), "label": b})
    det.attach(engine)
    engine.run([target], max_epochs=epochs)
    return det, engine


def test_collapse_detector_warns_on_constant_output(caplog):
    with caplog.at_level(logging.WARNING):
        det, engine = _run_monitor(lambda b: torch.full_like(b, 0.5))
    assert det.collapsed and "COLLAPSED" in caplog.text and "nearly) constant" in caplog.text
    assert engine.state.metrics["output_std"] < 1e-6


def test_collapse_detector_flags_mean_prediction_and_passes_good_restoration(caplog):
    with caplog.at_level(logging.WARNING):
        det, _ = _run_monitor(lambda b: b.mean(dim=(1, 2, 3, 4), keepdim=True).expand_as(b) + 1e-2 * torch.rand_like(b))
    assert det.collapsed and "no better than predicting" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        det, engine = _run_monitor(lambda b: (b + 0.05 * torch.randn_like(b)).clamp(0, 1))
    assert not det.collapsed and "COLLAPSED" not in caplog.text
    assert engine.state.metrics["mse_vs_constant"] < 0.2


def test_epoch_time_budget_stops_at_epoch_boundary():
    engine = Engine(lambda e, b: time.sleep(0.05))
    budget = EpochTimeBudget(seconds=0.25)
    budget.attach(engine)
    ends = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: ends.append(e.state.iteration))
    engine.run(range(2), max_epochs=100)
    assert budget.stopped_early and 1 <= engine.state.epoch < 100
    assert all(i % 2 == 0 for i in ends)  # every epoch ran to completion
    # a budget that runs out inside a long epoch cuts that epoch short, but epoch-end handlers still run
    long = Engine(lambda e, b: time.sleep(0.02))
    cut = EpochTimeBudget(seconds=0.1)
    cut.attach(long)
    completed = []
    long.add_event_handler(Events.EPOCH_COMPLETED, lambda e: completed.append(e.state.iteration))
    long.run(range(1000), max_epochs=5)
    assert cut.stopped_early and long.state.epoch == 1 and completed and completed[0] < 100
    disabled = Engine(lambda e, b: None)
    EpochTimeBudget(None).attach(disabled)
    disabled.run(range(2), max_epochs=3)
    assert disabled.state.epoch == 3


def test_provenance_tracks_epochs_and_round_trips(tmp_path):
    prov = Provenance("models_genesis", settings={"rates": (0.4, 0.5), "shape": torch.tensor([64, 64, 32])},
                      data={"n": 3})
    engine = Engine(lambda e, b: None)
    prov.attach(engine)
    engine.run([{"image": torch.zeros(2, 1, 8, 8, 8)}] * 2, max_epochs=3)
    state = prov.state_dict()
    assert state["epochs_completed"] == 3 and state["iterations_completed"] == 6
    assert state["input_shape"] == [2, 1, 8, 8, 8]
    assert state["settings"]["shape"] == [64, 64, 32] and state["settings"]["rates"] == [0.4, 0.5]
    torch.save({"provenance": state}, tmp_path / "p.pt")
    loaded = torch.load(tmp_path / "p.pt", weights_only=True)["provenance"]
    other = Provenance("x")
    other.load_state_dict(loaded)
    assert other.record["method"] == "models_genesis"
