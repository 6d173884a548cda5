"""Put the per-term values of a :class:`genesis_monai.losses.MultiTaskLoss` into the trainer output."""

from __future__ import annotations

__all__ = ["LossTermsHandler"]


class LossTermsHandler:
    """Trainer handler: after each loss computation, ``engine.state.output["loss_<term>"]`` = that term's
    unweighted value, so ``StatsHandler``/``TensorBoardStatsHandler`` with
    ``output_transform=genesis_monai.engines.scalars_transform("loss")`` log the total and every term.

    Args:
        loss: the :class:`~genesis_monai.losses.MultiTaskLoss` the trainer uses (anything with a
            ``last_terms`` dict works).
    """

    def __init__(self, loss):
        if not hasattr(loss, "last_terms"):
            raise TypeError(f"LossTermsHandler needs a loss with per-term values (MultiTaskLoss), got "
                            f"{type(loss).__name__}")
        self.loss = loss

    def attach(self, engine) -> None:
        from monai.engines.utils import IterationEvents

        # LOSS_COMPLETED fires before decollation, while the output is still one dict
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self._record)

    def _record(self, engine) -> None:
        output = engine.state.output
        if isinstance(output, dict):
            for name, value in self.loss.last_terms.items():
                output[f"loss_{name}"] = value
