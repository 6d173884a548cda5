import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import LrScheduleHandler

from genesis_monai.engines import WarmupLinearDecay, warmup_linear_decay


def optimizer(lr=5e-4):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lrs_by_epoch(scheduler, opt, epochs):
    """lr each 0-based epoch trains with when stepped once per epoch (what LrScheduleHandler(epoch_level=True) does)."""
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


# hand values: warm-up 10, 1000 epochs, decay from epoch 10: 1 - (e - 10) / 990
@pytest.mark.parametrize("epoch, factor", [(0, 0.1), (9, 1.0), (10, 1.0), (500, 1 - 490 / 990), (999, 1 - 989 / 990)])
def test_factor_hand_values(epoch, factor):
    assert WarmupLinearDecay()(epoch) == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("epoch, factor", [(0, 0.0), (1, 0.1), (9, 0.9), (10, 1.0), (500, 1 - 490 / 990)])
def test_reference_zero_start_quirk(epoch, factor):
    assert WarmupLinearDecay(reference_zero_start=True)(epoch) == pytest.approx(factor, rel=1e-12)


def test_reference_decay_start_and_floor():
    # the paper-era code decays from max_epochs / 10: factor 1 from epoch 10 to 100
    f = WarmupLinearDecay(decay_start_epoch=100)
    assert f(50) == 1.0 and f(100) == 1.0
    assert f(500) == pytest.approx(1 - 400 / 900) and f(999) == pytest.approx(1 / 900)
    # the floor is a factor: 1e-5 * lr, reached at and past max_epochs
    assert WarmupLinearDecay()(1000) == 1e-5 and WarmupLinearDecay()(5000) == 1e-5
    assert WarmupLinearDecay(min_factor=0.01)(995) == 0.01


def test_scheduler_lrs_per_epoch():
    opt = optimizer(5e-4)
    lrs = lrs_by_epoch(warmup_linear_decay(opt, warmup_epochs=4, max_epochs=12), opt, 12)
    expected = [5e-4 * f for f in (0.25, 0.5, 0.75, 1.0)] + [5e-4 * (1 - k / 8) for k in range(8)]
    assert lrs == pytest.approx(expected)
    opt = optimizer(1.0)
    lrs = lrs_by_epoch(warmup_linear_decay(opt, warmup_epochs=4, max_epochs=12, reference_zero_start=True), opt, 2)
    assert lrs == [0.0, 0.25]


def test_no_warmup():
    f = WarmupLinearDecay(warmup_epochs=0, max_epochs=4)
    assert [f(e) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_with_monai_lr_schedule_handler_and_resume():
    opt = optimizer(1.0)
    scheduler = warmup_linear_decay(opt, warmup_epochs=2, max_epochs=6)
    seen = []
    engine = Engine(lambda e, b: opt.step())
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(opt.param_groups[0]["lr"]))
    LrScheduleHandler(scheduler, epoch_level=True, print_lr=False).attach(engine)
    engine.run([0], max_epochs=3)
    assert seen == pytest.approx([0.5, 1.0, 1.0])
    # the scheduler state (including the factor's settings) restores into a fresh scheduler
    opt2 = optimizer(1.0)
    scheduler2 = warmup_linear_decay(opt2, warmup_epochs=2, max_epochs=6)
    scheduler2.load_state_dict(scheduler.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert lrs_by_epoch(scheduler2, opt2, 3) == pytest.approx([0.75, 0.5, 0.25])


@pytest.mark.parametrize("kwargs, match", [
    ({"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
    ({"warmup_epochs": 2.5}, "warmup_epochs must be an integer"),
    ({"max_epochs": 10, "warmup_epochs": 10}, "warmup_epochs <= decay_start_epoch < max_epochs"),
    ({"decay_start_epoch": 5}, "warmup_epochs <= decay_start_epoch"),
    ({"min_factor": 2.0}, "min_factor must be a number in"),
    ({"min_factor": -0.1}, "multiplicative floor"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        warmup_linear_decay(optimizer(), **kwargs)


def test_needs_an_optimizer():
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        warmup_linear_decay([torch.zeros(1)])
