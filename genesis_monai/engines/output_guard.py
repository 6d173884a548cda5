"""A run never destroys a finished checkpoint it did not make.

A new training run's first validation always counts as its best, so MONAI's key-metric
``CheckpointSaver`` replaces ``models/pretrained.pt`` (or ``models/model.pt``) within one epoch,
whatever wrote it: an earlier, longer run, or ``import-weights``. :func:`protect_finished_outputs`
runs before any data is prepared and refuses, naming the file and the three ways on, unless the
run resumes (then the restored ranking lets only a better checkpoint replace it) or ``overwrite``
is set (then a copy of the old file is kept beside it under a name the log prints, and the run
replaces the original when it validates).

Copying rather than moving leaves the file in place for a run that starts from it (MONAI Label's
``/train`` loads ``models/model.pt`` and fine-tunes it further), and keeps it if the run fails
before its first validation.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from typing import List, Optional, Sequence

from genesis_monai.io_utils import PARTIAL_SUFFIX

__all__ = ["protect_finished_outputs", "previous_name"]

logger = logging.getLogger(__name__)


def previous_name(path: str) -> str:
    """Where ``overwrite`` keeps the old file: ``models/pretrained.pt`` -> ``models/pretrained.previous.pt``."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.previous{ext}"


def _describe(path: str) -> str:
    stat = os.stat(path)
    when = datetime.datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M")
    return f"{path} ({stat.st_size / 1e6:.1f} MB, written {when})"


def protect_finished_outputs(paths: Sequence[str], resuming: bool = False, overwrite: bool = False,
                             resume_path: Optional[str] = None) -> List[str]:
    """Refuse to start a run that would replace an existing file of ``paths``, unless told how.

    Args:
        paths: finished outputs of the run (the best checkpoint it writes).
        resuming: the run continues from its resume file; existing outputs are then its own.
        overwrite: start afresh anyway; each existing output is first copied to
            :func:`previous_name` (replacing an older ``.previous`` copy) and the log says so.
        resume_path: the run's resume file, named in the message when it exists.

    Returns:
        The copies that were written (empty unless ``overwrite``).

    Raises:
        FileExistsError: an output exists and neither ``resuming`` nor ``overwrite`` is set; the
            message names the file and the choices.
    """
    import ignite.distributed as idist

    existing = [str(p) for p in paths if os.path.isfile(p)]
    if not existing or resuming:
        for path in existing:
            logger.info("resuming: %s is replaced only by a better checkpoint of this run", path)
        return []
    if not overwrite:
        choices = []
        if resume_path and os.path.isfile(resume_path):
            choices.append(f"  --resume true      continue the run that wrote it (from {resume_path})")
        choices += [f"  --overwrite true   start afresh; a copy of the old file is kept as {previous_name(existing[0])}",
                    "  --ckpt_dir DIR     write this run's checkpoints to another folder"]
        raise FileExistsError(
            "this run would replace a finished checkpoint it did not make: "
            + "; ".join(_describe(p) for p in existing) + ". Choose one:\n" + "\n".join(choices))
    kept = []
    if idist.get_rank() == 0:  # one rank copies; the others see the result
        for path in existing:
            target = previous_name(path)
            partial = target + PARTIAL_SUFFIX
            shutil.copyfile(path, partial)
            os.replace(partial, target)
            logger.warning("overwrite: %s will be replaced at this run's first validation; the previous one is "
                           "kept as %s", path, target)
            kept.append(target)
    return kept
