"""Inference over many files where one unreadable file must not stop the rest.

:class:`SkipUnreadable` wraps a map-style dataset (MONAI ``Dataset`` with ``LoadImaged`` first)
as an iterable one that yields every item it can load and skips the others with one WARNING line
(file and reason; the traceback at DEBUG). It has no length on purpose: MONAI's workflows then run
one epoch until the items run out, instead of stopping early or repeating items to fill a length
that skipped files made wrong.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, Sequence

from torch.utils.data import Dataset, IterableDataset, get_worker_info

__all__ = ["SkipUnreadable", "item_source"]

logger = logging.getLogger(__name__)


def item_source(item: Any, key: str = "image") -> str:
    """The file an item of a datalist names under ``key`` (a path, or the first of a list of paths)."""
    value = item.get(key, item) if isinstance(item, dict) else item
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return str(value)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    cause = err.__cause__ or err.__context__
    while cause is not None and len(text) < 400:  # MONAI wraps reader errors: name the innermost one
        text = " ".join(str(cause).split()) or text
        cause = cause.__cause__ or cause.__context__
    return f"{type(err).__name__}: {text[:400]}"


class SkipUnreadable(IterableDataset):
    """Iterate ``dataset`` (indexable, with ``data`` = its datalist), skipping items that fail to load.

    Args:
        dataset: e.g. ``monai.data.Dataset(data=[{"image": path}, ...], transform=...)``.
        key: the datalist key that names an item's file (for the messages).

    Attributes:
        skipped: file -> one-line reason, for the items this process skipped (DataLoader workers keep
            their own; their WARNING lines are still printed).

    With ``num_workers > 0`` items are dealt to workers by index (worker ``w`` of ``n`` loads items
    ``w, w + n, ...``), so every item is loaded once.
    """

    def __init__(self, dataset: Dataset, key: str = "image") -> None:
        super().__init__()
        self.dataset = dataset
        self.key = key
        self.skipped: Dict[str, str] = {}

    def _source(self, index: int) -> str:
        data: Sequence[Any] = getattr(self.dataset, "data", None) or []
        return item_source(data[index], self.key) if index < len(data) else f"item {index}"

    def __iter__(self) -> Iterator[Any]:
        worker = get_worker_info()
        start, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for index in range(start, len(self.dataset), step):  # type: ignore[arg-type]
            try:
                item = self.dataset[index]
            except Exception as err:  # any failure to load or preprocess one file skips that file only
                source = self._source(index)
                reason = _one_line(err)
                self.skipped[source] = reason
                logger.warning("skipped %s: %s", source, reason)
                logger.debug("skipped %s, details:", source, exc_info=err)
                continue
            yield item
