"""What an inference run did, file by file: segmented, skipped and why; a run that segmented nothing fails."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from genesis_monai.data.skip_unreadable import item_source
from genesis_monai.io_utils import atomic_write_json

__all__ = ["InferenceReport"]

logger = logging.getLogger(__name__)


def _batch_sources(batch: Any, key: str) -> List[str]:
    items = batch if isinstance(batch, (list, tuple)) else [batch]
    out: List[str] = []
    for item in items:
        value = item.get(key) if isinstance(item, Mapping) else None
        names = getattr(value, "meta", {}).get("filename_or_obj") if value is not None else None
        if names is None:
            continue
        out += [str(n) for n in names] if isinstance(names, (list, tuple)) else [str(names)]
    return out


class InferenceReport:
    """Attach to an inference evaluator: at the end, one summary line and ``inference_report.json``.

    Args:
        datalist: the items the run was asked to process (``[{"image": path}, ...]``).
        output_dir: where ``inference_report.json`` goes (``segmented``, ``skipped`` file -> reason).
        reasons: file -> reason of skipped items, e.g. ``SkipUnreadable.skipped`` (files missing from
            it are reported as "not loaded, see the log").
        key: the item key that names the input file.

    Raises (at the end of the run):
        RuntimeError: no item was processed, naming how many were asked for and where the reasons are.
    """

    def __init__(self, datalist: Sequence[Any], output_dir: Optional[str] = None,
                 reasons: Optional[Mapping[str, str]] = None, key: str = "image") -> None:
        self.expected = [item_source(item, key) for item in datalist]
        self.output_dir = output_dir
        self.reasons = reasons if reasons is not None else {}
        self.key = key
        self.done: List[str] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.done.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.COMPLETED, self._report)

    def _record(self, engine: Any) -> None:
        self.done += _batch_sources(engine.state.batch, self.key)

    def summary(self) -> Dict[str, Any]:
        done = {os.path.abspath(p) for p in self.done}
        skipped = {p: self.reasons.get(p, "not loaded: see the 'skipped' line in the log")
                   for p in self.expected if os.path.abspath(p) not in done}
        return {"n_inputs": len(self.expected), "segmented": list(self.done), "skipped": skipped}

    def _report(self, engine: Any) -> None:
        summary = self.summary()
        skipped = summary["skipped"]
        if self.output_dir:
            atomic_write_json(os.path.join(self.output_dir, "inference_report.json"), summary)
        if skipped:
            logger.warning("segmented %d of %d input(s); skipped %d: %s", len(summary["segmented"]),
                           summary["n_inputs"], len(skipped), "; ".join(f"{p} ({r})" for p, r in skipped.items()))
        else:
            logger.info("segmented all %d input(s)", summary["n_inputs"])
        if not summary["segmented"]:
            raise RuntimeError(f"no volume was segmented: all {summary['n_inputs']} input(s) failed to load "
                               "(the reasons are in the 'skipped' lines above"
                               + (f" and in {os.path.join(self.output_dir, 'inference_report.json')})"
                                  if self.output_dir else ")"))
