"""Resumable training: one resume file per run, restored with everything a run's decisions depend on.

MONAI's ``CheckpointSaver`` names interval checkpoints by epoch and forgets, in a new process,
the files an earlier process wrote, so every resumed run leaves another 150 MB file behind; and a
resumed run that restores only model/optimiser/trainer forgets its best validation score (the
next validation, however bad, replaces the best checkpoint) and its early-stopping counter.
:class:`ResumeCheckpoint` writes one file, replaced atomically after every epoch, and
:class:`TrainingProgress` carries the run's best metric, the early-stopping state and the
best-checkpoint ranking inside it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Mapping, Optional, Union

import torch

from genesis_monai.io_utils import atomic_torch_save

__all__ = ["resume_available", "ResumeCheckpoint", "TrainingProgress"]

logger = logging.getLogger(__name__)


def resume_available(resume: bool, path: str) -> bool:
    """Whether this run continues from ``path``: ``resume`` is set and the file exists.

    ``resume`` without a file is not an error (the first run of a resumable job is started the
    same way), but it is said: one WARNING line naming the file that was looked for.
    """
    if not resume:
        return False
    if os.path.isfile(path):
        logger.info("resume: continuing from %s", path)
        return True
    logger.warning("resume requested but there is no resume checkpoint at %s: starting from scratch", path)
    return False


class TrainingProgress:
    """The state besides weights that a resumed run must get back (all parts optional).

    Args:
        evaluator: MONAI evaluator whose ``state.best_metric`` / ``state.best_metric_epoch`` are kept.
        early_stop: MONAI ``EarlyStopHandler`` (its ignite ``EarlyStopping`` counter and best score).
        best_saver: MONAI ``CheckpointSaver`` with ``save_key_metric=True``: its ranking of saved
            checkpoints, so that the restored run replaces the best file only with a better one.
    """

    def __init__(self, evaluator: Any = None, early_stop: Any = None, best_saver: Any = None) -> None:
        self.evaluator = evaluator
        self.early_stop = early_stop
        self.best_saver = best_saver

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {}
        if self.evaluator is not None:
            state["best_metric"] = float(self.evaluator.state.best_metric)
            state["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        stopper = getattr(self.early_stop, "_handler", None)
        if stopper is not None:
            state["early_stop"] = dict(stopper.state_dict())
        ranking = getattr(self.best_saver, "_key_metric_checkpoint", None)
        if ranking is not None:
            state["best_checkpoint"] = dict(ranking.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.evaluator is not None and "best_metric" in state:
            self.evaluator.state.best_metric = state["best_metric"]
            self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        if self.early_stop is not None and "early_stop" in state:
            stopper = getattr(self.early_stop, "_handler", None)
            if stopper is None:
                raise RuntimeError("TrainingProgress: call early_stop.set_trainer(trainer) before resuming, "
                                   "so that there is an early-stopping state to restore")
            stopper.load_state_dict(state["early_stop"])
        if self.best_saver is not None and "best_checkpoint" in state:
            self.best_saver.load_state_dict(state["best_checkpoint"])


class ResumeCheckpoint:
    """Save ``save_dict`` to one file after every ``save_interval`` epochs and at the end; restore it at start.

    Args:
        path: the resume file (e.g. ``models/pretraining_resume.pt``); replaced atomically, so an
            interrupted save leaves the previous one intact.
        save_dict: name -> object with ``state_dict()`` / ``load_state_dict()`` (network, optimizer,
            scheduler, the ignite trainer, a :class:`TrainingProgress`, ...).
        resume: restore ``path`` when the trainer starts (usually ``resume_available(...)``).
        save_interval: epochs between saves.
        map_location: where tensors are loaded to.

    Only rank 0 writes under DDP; every rank restores.
    """

    def __init__(self, path: str, save_dict: Mapping[str, Any], resume: bool = False, save_interval: int = 1,
                 map_location: Optional[Union[str, torch.device]] = None) -> None:
        if int(save_interval) < 1:
            raise ValueError(f"ResumeCheckpoint: save_interval must be >= 1, got {save_interval}")
        self.path = str(path)
        self.save_dict = dict(save_dict)
        self.resume = bool(resume)
        self.save_interval = int(save_interval)
        self.map_location = map_location

    def attach(self, trainer: Any) -> None:
        from ignite.engine import Events
        import ignite.distributed as idist

        if self.resume:
            trainer.add_event_handler(Events.STARTED, self.load)
        if idist.get_rank() == 0:
            trainer.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
            trainer.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Any = None) -> None:
        atomic_torch_save({name: obj.state_dict() for name, obj in self.save_dict.items()}, self.path)

    def load(self, engine: Any) -> None:
        from ignite.handlers import Checkpoint

        checkpoint = torch.load(self.path, map_location=self.map_location, weights_only=True)
        missing = sorted(set(self.save_dict) - set(checkpoint))
        if missing:
            raise KeyError(f"{self.path}: resume checkpoint lacks {missing} (it holds {sorted(checkpoint)}); "
                           "was it written by another config?")
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{self.path} is at epoch {engine.state.epoch}, beyond this run's max_epochs {max_epochs}: "
                             "raise max_epochs to train further")
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d", self.path, engine.state.epoch)
