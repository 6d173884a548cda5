"""Sample montages of a multi-head slice network during validation (SMART-Net upstream)."""

from __future__ import annotations

import os
from typing import Any, List, Optional

__all__ = ["MultiTaskSampleSaver"]


class MultiTaskSampleSaver:
    """Every ``interval`` validation runs, draw the first batch: input, label vs predicted mask, reconstruction.

    Attach to the evaluator (``decollate=False``: its output holds ``"image"``, the targets dict under
    ``"label"`` and the network's dict of logits under ``"pred"``). Writes
    ``{output_dir}/samples_epoch{E:04d}.png`` with E the trainer's epoch when ``trainer`` is given
    (:func:`genesis_monai.viz_slices.save_multitask_montage`), so a head that learns nothing is
    visible early.
    """

    def __init__(self, output_dir: str, interval: int = 1, n: int = 4, trainer: Any = None, threshold: float = 0.5):
        self.output_dir = str(output_dir)
        self.interval = max(1, int(interval))
        self.n = int(n)
        self.trainer = trainer
        self.threshold = float(threshold)
        self._runs = 0
        self._pending = False
        self.saved: List[str] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._save)

    def _epoch_started(self, engine: Any) -> None:
        self._runs += 1
        self._pending = (self._runs - 1) % self.interval == 0

    def _save(self, engine: Any) -> Optional[str]:
        if not self._pending:
            return None
        self._pending = False
        from genesis_monai.viz_slices import save_multitask_montage

        out = engine.state.output
        if not isinstance(out, dict) or not isinstance(out.get("pred"), dict):
            raise TypeError("MultiTaskSampleSaver needs an evaluator with decollate=False whose network returns a dict "
                            f"of head outputs; got output of type {type(out).__name__}")
        epoch = self.trainer.state.epoch if self.trainer is not None else int(engine.state.epoch or self._runs)
        path = os.path.join(self.output_dir, f"samples_epoch{epoch:04d}.png")
        target = out.get("label") if isinstance(out.get("label"), dict) else {}
        save_multitask_montage(out["image"], out["pred"], target, path, n=self.n, threshold=self.threshold,
                               title=f"epoch {epoch}")
        self.saved.append(path)
        return path
