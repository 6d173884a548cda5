"""Stop training at an epoch boundary before a wall-clock budget runs out."""

from __future__ import annotations

import logging
import time
from typing import Optional

import ignite.distributed as idist

__all__ = ["EpochTimeBudget"]

logger = logging.getLogger(__name__)


def _agreed_by_rank0(flag: bool) -> bool:
    """Under DDP every rank must stop at the same point, or the others hang in a collective: rank 0 decides."""
    if idist.get_world_size() <= 1:
        return flag
    return bool(idist.broadcast(int(flag), src=0))


class EpochTimeBudget:
    """Stop an Ignite trainer when a wall-clock budget runs out, always at an epoch end.

    Unlike ``ignite.handlers.TimeLimit`` (which stops mid-epoch and skips epoch-end handlers),
    the run always ends with ``EPOCH_COMPLETED`` handlers (validation, best-model checkpoint)
    having run:

    - after each epoch, training stops if the next epoch would overrun ``seconds``;
    - if the budget runs out in the middle of an epoch (large epochs), that epoch is cut short
      with ``engine.terminate_epoch()`` (its epoch-end handlers still run) and training stops.

    At least one iteration always runs. Under DDP rank 0 decides for all ranks; the mid-epoch
    check then costs a broadcast, so it runs only every ``sync_every`` iterations (every
    iteration in a single process, where it is free).

    Args:
        seconds: wall-clock budget for ``trainer.run()``; None or <= 0 disables the handler.
        sync_every: iterations between mid-epoch checks under DDP.
    """

    def __init__(self, seconds: Optional[float], sync_every: int = 20):
        self.seconds = float(seconds) if seconds else 0.0
        self.sync_every = max(1, int(sync_every))
        self._start = 0.0
        self._epoch_start = 0.0
        self._out_of_time = False
        self.stopped_early = False

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if self.seconds <= 0:
            return
        every = 1 if idist.get_world_size() <= 1 else self.sync_every
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=every), self._check_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._check)

    def _started(self, engine) -> None:
        self._start = time.perf_counter()
        self._out_of_time = False
        logger.info("time budget: %.1f min for this training run (stops at an epoch end)", self.seconds / 60.0)

    def _epoch_started(self, engine) -> None:
        self._epoch_start = time.perf_counter()

    def _check_iteration(self, engine) -> None:
        if self._out_of_time:
            return
        if _agreed_by_rank0(time.perf_counter() - self._start > self.seconds):
            self._out_of_time = True
            logger.info("time budget %.0f s used up in epoch %d: ending this epoch early", self.seconds,
                        engine.state.epoch)
            engine.terminate_epoch()

    def _check(self, engine) -> None:
        now = time.perf_counter()
        last_epoch = now - self._epoch_start
        if self._out_of_time or _agreed_by_rank0((now - self._start) + last_epoch > self.seconds):
            self.stopped_early = engine.state.epoch < (engine.state.max_epochs or 0)
            if self.stopped_early:
                logger.info("time budget %.0f s: stopping after epoch %d (%.0f s used, last epoch %.1f s)",
                            self.seconds, engine.state.epoch, now - self._start, last_epoch)
                engine.terminate()
