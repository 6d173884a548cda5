"""Ignite handlers that watch restoration pretraining: collapse detection and sample pictures."""

from __future__ import annotations

import logging
import os
from typing import Optional

from genesis_monai.engines.outputs import OutputKey, output_tensors

__all__ = ["CollapseDetector", "RestorationSampleSaver"]

logger = logging.getLogger(__name__)


class CollapseDetector:
    """Warn loudly when restoration pretraining collapses to a (near) constant output.

    Users of the reference code saw the network converge to one grey value (ModelsGenesis #25).
    Over every validation run this handler accumulates, per batch, the standard deviation of
    the restored output and the MSE of the restoration against the MSE of predicting each
    target's mean (the best constant). After ``warmup_epochs`` validations it warns when

    - the output's mean standard deviation is below ``min_output_std``, or
    - the restoration MSE is not better than ``max_mse_ratio`` x the best-constant MSE.

    The latest figures are written to ``engine.state.metrics`` as ``output_std`` and
    ``mse_vs_constant`` (restoration MSE / constant MSE; < 1 means better than a constant).

    Args:
        warmup_epochs: validation runs to wait before judging (early epochs are noisy).
        min_output_std: output std below this counts as constant.
        max_mse_ratio: ratio at or above this counts as "no better than a constant".
        pred_key, target_key: which network output is the restoration and which target it is
            compared with, for multi-output networks (see :func:`genesis_monai.engines.select_output`;
            None = the whole prediction / label).
    """

    def __init__(self, warmup_epochs: int = 5, min_output_std: float = 1e-3, max_mse_ratio: float = 0.98,
                 pred_key: OutputKey = None, target_key: OutputKey = None):
        self.warmup_epochs = warmup_epochs
        self.pred_key, self.target_key = pred_key, target_key
        self.min_output_std = min_output_std
        self.max_mse_ratio = max_mse_ratio
        self.collapsed = False
        self._reset()

    def _reset(self) -> None:
        self._std_sum = 0.0
        self._mse_sum = 0.0
        self._const_sum = 0.0
        self._n = 0

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._judge)

    def _accumulate(self, engine) -> None:
        _, pred, target = output_tensors(engine.state.output, self.pred_key, self.target_key)
        pred, target = pred.detach().float(), target.detach().float()
        dims = tuple(range(1, pred.ndim))
        self._std_sum += pred.std(dim=dims).sum().item()
        self._mse_sum += ((pred - target) ** 2).mean(dim=dims).sum().item()
        self._const_sum += target.var(dim=dims, unbiased=False).sum().item()
        self._n += pred.shape[0]

    def check(self, output_std: float, mse: float, constant_mse: float) -> Optional[str]:
        """Return a warning message when the figures indicate a collapse, else None."""
        ratio = mse / max(constant_mse, 1e-12)
        if output_std < self.min_output_std:
            return (f"restoration output is (nearly) constant: mean per-cube std {output_std:.2e} < {self.min_output_std:g}")
        if ratio >= self.max_mse_ratio:
            return (f"restoration MSE {mse:.4g} is no better than predicting each cube's mean ({constant_mse:.4g}; "
                    f"ratio {ratio:.3f} >= {self.max_mse_ratio})")
        return None

    def _judge(self, engine) -> None:
        if self._n == 0:
            return
        std, mse, const = self._std_sum / self._n, self._mse_sum / self._n, self._const_sum / self._n
        engine.state.metrics["output_std"] = std
        engine.state.metrics["mse_vs_constant"] = mse / max(const, 1e-12)
        runs = getattr(self, "_runs", 0) + 1
        self._runs = runs
        if runs <= self.warmup_epochs:
            return
        problem = self.check(std, mse, const)
        was_collapsed, self.collapsed = self.collapsed, problem is not None
        if problem and was_collapsed:  # said already: one line per validation, not the whole banner again
            logger.warning("pretraining still looks collapsed (epoch %s): %s", engine.state.epoch, problem)
        elif not problem and was_collapsed:
            logger.warning("pretraining recovered (epoch %s): restoration MSE / constant MSE = %.3f",
                           engine.state.epoch, mse / max(const, 1e-12))
        elif problem:
            logger.warning(
                "\n%s\nPRETRAINING MAY HAVE COLLAPSED: %s.\nLook at the sample pictures; consider a lower learning "
                "rate (the published SGD lr 1.0 collapses on some data, ModelsGenesis #25), e.g. "
                "--optimizer#lr 0.1, or Adam.\n%s", "!" * 78, problem, "!" * 78)


class RestorationSampleSaver:
    """Save a montage of degraded / restored / original middle slices every ``interval`` epochs.

    Attach to the evaluator: the first batch of a validation run is drawn as a PNG
    ``{output_dir}/samples_epoch{E:04d}.png`` (E = the trainer's epoch when ``trainer`` is given),
    so a collapse or a wrong degradation is visible early. ``pred_key``/``target_key`` pick the
    restoration output and target of multi-output networks (as in :class:`CollapseDetector`).
    """

    def __init__(self, output_dir: str, interval: int = 1, n: int = 4, trainer=None, pred_key: OutputKey = None,
                 target_key: OutputKey = None):
        self.output_dir = output_dir
        self.pred_key, self.target_key = pred_key, target_key
        self.interval = max(1, int(interval))
        self.n = n
        self.trainer = trainer
        self._runs = 0
        self.saved = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._save)

    def _epoch_started(self, engine) -> None:
        self._runs += 1
        self._pending = (self._runs - 1) % self.interval == 0

    def _save(self, engine) -> None:
        if not getattr(self, "_pending", False):
            return
        self._pending = False
        from genesis_monai.viz import save_degradation_montage

        degraded, restored, original = output_tensors(engine.state.output, self.pred_key, self.target_key)
        # an evaluator run by ValidationHandler carries the trainer's epoch in its state
        epoch = self.trainer.state.epoch if self.trainer is not None else int(engine.state.epoch or self._runs)
        path = os.path.join(self.output_dir, f"samples_epoch{epoch:04d}.png")
        save_degradation_montage(original.cpu(), degraded.cpu(), restored.detach().cpu(), path=path, n=self.n,
                                 title=f"epoch {epoch}: degraded / restored / original")
        self.saved.append(path)
