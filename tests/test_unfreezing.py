import logging

import pytest
import torch
from ignite.engine import Engine, Events
from torch import nn

from genesis_monai.engines import SMART_NET_UNFREEZING, GradualUnfreezing

STAGES = ["layer4", "layer3", "layer2", "layer1", "stem"]


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.layer1 = nn.Conv2d(2, 2, 1)
        self.layer2 = nn.Conv2d(2, 2, 1)
        self.layer3 = nn.Conv2d(2, 2, 1)
        self.layer4 = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = TinyEncoder()
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=(2, 3)))


def small_schedule():
    # the published stage order with small epochs: after 2, 3, 4, 5, 6 completed epochs
    return [[2, "encoder.layer4."], [3, "encoder.layer3."], [4, "encoder.layer2."], [5, "encoder.layer1."],
            [6, ["encoder.conv1.", "encoder.bn1."]]]


def stage_of(name):
    for stage in ("layer4", "layer3", "layer2", "layer1"):
        if name.startswith(f"encoder.{stage}."):
            return stage
    return "stem" if name.startswith("encoder.") else None


def trainable_stages(net):
    """Reference: which encoder stages train, read from requires_grad (a stage must be all-or-nothing)."""
    out = {}
    for name, p in net.named_parameters():
        stage = stage_of(name)
        if stage is None:
            assert p.requires_grad, f"{name} outside the encoder must never be frozen"
            continue
        out.setdefault(stage, set()).add(p.requires_grad)
    assert all(len(v) == 1 for v in out.values()), out
    return {s for s, v in out.items() if v == {True}}


def run_epochs(net, handler, epochs, start_epoch=0):
    seen = {}
    engine = Engine(lambda e, b: None)
    handler.attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def record(e):  # attached after the handler: sees the state this epoch trains with
        seen[e.state.epoch] = trainable_stages(net)

    if start_epoch:
        @engine.on(Events.STARTED)
        def resume(e):  # what a checkpoint loader does: restore the epoch counter at STARTED
            e.state.epoch = start_epoch
            e.state.iteration = start_epoch
    engine.run([0], max_epochs=epochs)
    return seen


def test_schedule_toggles_named_stages_at_named_epochs(caplog):
    net = TinyNet()
    handler = GradualUnfreezing(net, frozen=["encoder."], schedule=small_schedule())
    with caplog.at_level(logging.INFO, logger="genesis_monai.engines.unfreezing"):
        seen = run_epochs(net, handler, epochs=8)
    # Ignite epoch k trains after k-1 completed epochs: stage "after e epochs" starts at Ignite epoch e+1
    expected = {1: set(), 2: set(), 3: {"layer4"}, 4: {"layer4", "layer3"}, 5: {"layer4", "layer3", "layer2"},
                6: {"layer4", "layer3", "layer2", "layer1"}, 7: set(STAGES), 8: set(STAGES)}
    assert seen == expected
    layer4_params = sum(p.numel() for p in net.encoder.layer4.parameters())
    assert f"unfrozen encoder.layer4. at epoch 3 ({layer4_params} params)" in caplog.text
    assert "unfrozen encoder.conv1., encoder.bn1. at epoch 7" in caplog.text
    assert caplog.text.count("unfrozen encoder.layer4.") == 1  # logged once, not every epoch
    state = handler.state()
    assert state["frozen_params"] == 0 and state["pending_stages"] == [] and len(state["unfrozen_stages"]) == 5


def test_frozen_parameters_get_no_gradient_and_adam_skips_them():
    net = TinyNet()
    handler = GradualUnfreezing(net, schedule=[[1, "encoder.layer4."]])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1, weight_decay=0.1)  # holds every parameter
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    seen = {}

    def step(engine, batch):
        optimizer.zero_grad()
        net(torch.rand(2, 1, 4, 4)).sum().backward()
        optimizer.step()
        seen[engine.state.epoch] = {n: not torch.equal(p, before[n]) for n, p in net.named_parameters()}

    engine = Engine(step)
    handler.attach(engine)
    engine.run([0], max_epochs=2)
    changed_1, changed_2 = seen[1], seen[2]
    assert changed_1["head.weight"] and not any(v for n, v in changed_1.items() if n.startswith("encoder."))
    assert changed_2["encoder.layer4.0.weight"] and not changed_2["encoder.layer3.weight"]
    assert net.encoder.layer3.weight.grad is None


@pytest.mark.parametrize("start_epoch", [3, 4, 6])
def test_resume_applies_passed_stages(start_epoch, caplog):
    fresh_net, resumed_net = TinyNet(), TinyNet()
    fresh = run_epochs(fresh_net, GradualUnfreezing(fresh_net, schedule=small_schedule()), epochs=8)
    with caplog.at_level(logging.INFO, logger="genesis_monai.engines.unfreezing"):
        resumed = run_epochs(resumed_net, GradualUnfreezing(resumed_net, schedule=small_schedule()), epochs=8,
                             start_epoch=start_epoch)
    assert sorted(resumed) == list(range(start_epoch + 1, 9))
    assert all(resumed[e] == fresh[e] for e in resumed)
    assert "unfrozen encoder.layer4." in caplog.text  # the passed stages are reported on resume


def test_resume_seen_at_started():
    # a run whose epoch counter is already restored when the handler's STARTED runs
    net = TinyNet()
    handler = GradualUnfreezing(net, schedule=small_schedule())
    engine = Engine(lambda e, b: None)

    @engine.on(Events.STARTED)
    def resume(e):
        e.state.epoch = 4
        e.state.iteration = 4

    handler.attach(engine)  # attached after the restore
    states = []
    engine.add_event_handler(Events.STARTED, lambda e: states.append(trainable_stages(net)))
    engine.run([0], max_epochs=5)
    assert states[0] == {"layer4", "layer3", "layer2"}


def test_dict_schedule_and_default_schedule():
    net = TinyNet()
    a = GradualUnfreezing(net, schedule={"epochs": [3, 2], "stages": ["encoder.layer3.", "encoder.layer4."]})
    assert a.stages == [(2, ["encoder.layer4."]), (3, ["encoder.layer3."])]
    default = GradualUnfreezing(net)
    assert [e for e, _ in default.stages] == [101, 111, 121, 131, 141]
    assert default.stages[0][1] == ["encoder.layer4."] and default.stages[-1][1] == ["encoder."]
    assert SMART_NET_UNFREEZING[0] == [101, "encoder.layer4."]


def test_frozen_throughout_without_stages():
    net = TinyNet()
    seen = run_epochs(net, GradualUnfreezing(net, schedule=[]), epochs=3)
    assert all(v == set() for v in seen.values())


def test_bad_prefix_is_a_clear_error():
    net = TinyNet()
    with pytest.raises(ValueError, match=r"'encoder\.layer5\.' matches no parameter.*encoder\.conv1\.weight"):
        GradualUnfreezing(net, schedule=[[1, "encoder.layer5."]])
    with pytest.raises(ValueError, match="'decoder.' matches no parameter"):
        GradualUnfreezing(net, frozen=["decoder."], schedule=[])
    with pytest.raises(ValueError, match="outside the frozen prefixes"):
        GradualUnfreezing(net, frozen=["encoder.layer4."], schedule=[[1, "encoder."]])
    with pytest.raises(ValueError, match="integers >= 0"):
        GradualUnfreezing(net, schedule=[[-1, "encoder.layer4."]])
    with pytest.raises(ValueError, match="'epochs' and 'stages'"):
        GradualUnfreezing(net, schedule={"epoch": [1], "stages": ["encoder."]})


def test_bad_prefix_checked_again_at_attach():
    net = TinyNet()
    handler = GradualUnfreezing(net, schedule=[[1, "encoder.layer4."]])
    net.encoder.layer4 = nn.Identity()  # the network changed after construction
    with pytest.raises(ValueError, match="'encoder.layer4.' matches no parameter"):
        handler.attach(Engine(lambda e, b: None))


def test_data_parallel_wrapper_is_unwrapped():
    net = TinyNet()
    handler = GradualUnfreezing(nn.DataParallel(net), schedule=[[1, "encoder.layer4."]])
    run_epochs(net, handler, epochs=1)
    assert not net.encoder.conv1.weight.requires_grad


@pytest.mark.parametrize("freeze_batchnorm", [False, True])
def test_batchnorm_statistics(freeze_batchnorm):
    net = TinyNet()
    handler = GradualUnfreezing(net, schedule=[[1, "encoder.layer4."]], freeze_batchnorm=freeze_batchnorm)
    stats = {}

    def step(engine, batch):
        net.train()  # what MONAI's SupervisedTrainer does every iteration
        bn1, bn4 = net.encoder.bn1.running_mean.clone(), net.encoder.layer4[1].running_mean.clone()
        net(torch.rand(2, 1, 4, 4) + 1.0)
        stats[engine.state.epoch] = (not torch.equal(bn1, net.encoder.bn1.running_mean),
                                     not torch.equal(bn4, net.encoder.layer4[1].running_mean))

    engine = Engine(step)
    handler.attach(engine)
    engine.run([0], max_epochs=2)
    if freeze_batchnorm:
        assert stats[1] == (False, False)  # frozen BN layers use and keep their running statistics
        assert stats[2] == (False, True)  # layer4's BN trains again once its stage is unfrozen
    else:  # the reference: BN statistics keep updating while the weights are frozen
        assert stats[1] == (True, True) and stats[2] == (True, True)
