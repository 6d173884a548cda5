"""Per-epoch learning-rate schedules: SMART-Net's linear warm-up then linear decay."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["WarmupLinearDecay", "warmup_linear_decay"]


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"warmup_linear_decay: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class WarmupLinearDecay:
    """The LR factor for 0-based epoch ``e`` (a picklable ``lr_lambda``; its settings go into the scheduler's state).

    - warm-up, ``e < warmup_epochs``: ``(e + 1) / warmup_epochs``, so the first epoch already trains
      (``reference_zero_start=True``: ``e / warmup_epochs``, the reference's quirk: epoch 0 runs at lr 0);
    - then ``1 - (e - decay_start_epoch) / (max_epochs - decay_start_epoch)`` (1.0 until ``decay_start_epoch``),
      floored at ``min_factor``.

    ``min_factor`` is a multiplicative floor on the factor, not an absolute learning rate: the reference
    passes its ``min_lr=1e-5`` as this floor, so with lr 5e-4 the last epochs run at 5e-9.
    """

    def __init__(self, warmup_epochs: int = 10, max_epochs: int = 1000, min_factor: float = 1e-5,
                 reference_zero_start: bool = False, decay_start_epoch: Optional[int] = None) -> None:
        self.warmup_epochs = _int(warmup_epochs, "warmup_epochs", 0)
        self.max_epochs = _int(max_epochs, "max_epochs", 1)
        self.decay_start_epoch = (self.warmup_epochs if decay_start_epoch is None
                                  else _int(decay_start_epoch, "decay_start_epoch", 0))
        if not self.warmup_epochs <= self.decay_start_epoch < self.max_epochs:
            raise ValueError(f"warmup_linear_decay: need warmup_epochs <= decay_start_epoch < max_epochs, got "
                             f"warmup_epochs={self.warmup_epochs}, decay_start_epoch={self.decay_start_epoch}, "
                             f"max_epochs={self.max_epochs}")
        if isinstance(min_factor, bool) or not isinstance(min_factor, (int, float)) or not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"warmup_linear_decay: min_factor must be a number in [0, 1] (a multiplicative floor "
                             f"on the factor, not an absolute lr), got {min_factor!r}")
        self.min_factor = float(min_factor)
        self.reference_zero_start = bool(reference_zero_start)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch if self.reference_zero_start else epoch + 1) / self.warmup_epochs
        decayed = 1.0 - max(0, epoch - self.decay_start_epoch) / (self.max_epochs - self.decay_start_epoch)
        return max(decayed, self.min_factor)


def warmup_linear_decay(optimizer: torch.optim.Optimizer, warmup_epochs: int = 10, max_epochs: int = 1000,
                        min_factor: float = 1e-5, reference_zero_start: bool = False,
                        decay_start_epoch: Optional[int] = None) -> torch.optim.lr_scheduler.LambdaLR:
    """SMART-Net's schedule as a ``LambdaLR`` to step once per epoch (MONAI ``LrScheduleHandler(epoch_level=True)``).

    The 0-based epoch ``e`` (Ignite epoch ``e + 1``) trains at ``lr * WarmupLinearDecay(...)(e)``: a linear
    warm-up over ``warmup_epochs`` epochs, then a linear decay that would reach 0 at ``max_epochs``,
    floored at ``min_factor`` (see :class:`WarmupLinearDecay`).

    Defaults: warm-up 10, 1000 epochs, floor 1e-5 (the reference's ``min_lr`` used as a factor), decay
    starting right after the warm-up. The paper-era reference code starts its decay at
    ``max_epochs / 10`` (factor 1.0 from epoch 10 to 100 for 1000 epochs): ``decay_start_epoch=100``
    reproduces that; it also runs epoch 0 at lr 0 (``reference_zero_start=True``).

    Args:
        optimizer: the optimiser whose param groups' ``lr`` is the peak learning rate.
        warmup_epochs: epochs of linear warm-up (0: none).
        max_epochs: the epoch count the decay is laid out for (the trainer's ``max_epochs``).
        min_factor: floor on the factor, in [0, 1].
        reference_zero_start: warm-up factor ``e / warmup_epochs`` (epoch 0 at lr 0) instead of
            ``(e + 1) / warmup_epochs``.
        decay_start_epoch: 0-based epoch from which the factor decays (``None``: ``warmup_epochs``).

    Returns:
        ``torch.optim.lr_scheduler.LambdaLR``; its ``state_dict()`` carries the settings (resumable).
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"warmup_linear_decay: optimizer must be a torch.optim.Optimizer, "
                        f"got {type(optimizer).__name__}")
    factor = WarmupLinearDecay(warmup_epochs=warmup_epochs, max_epochs=max_epochs, min_factor=min_factor,
                               reference_zero_start=reference_zero_start, decay_start_epoch=decay_start_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
