"""Reading one named output out of a multi-output network's prediction or a multi-target batch.

Restoration pretraining of the Genesis family has single- and multi-output networks:

- Models Genesis: ``pred`` is the restored cube (a tensor);
- Semantic Genesis / TransVW: ``pred`` is ``(restored, class_logits)`` (or a dict);
- SMART-Net: ``pred`` holds cls + seg + rec outputs.

Likewise ``label`` (the targets) is a tensor, or a dict ``{"restoration": ..., "class": ...}`` when
:class:`~genesis_monai.engines.PrepareDegradedBatch` passes extra targets through. Monitors, metrics
and loss terms name the part they read with a *key*: ``None`` (the value itself), an ``int`` (an index
into a tuple/list) or a ``str`` (a dict key). One rule, used everywhere: :func:`select_output`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
from monai.utils import CommonKeys

__all__ = ["OutputKey", "select_output", "output_tensors", "pred_target_transform", "scalars_transform"]

#: None = the value itself; int = index into a tuple/list; str = key of a dict
OutputKey = Optional[Union[int, str]]


def select_output(value: Any, key: OutputKey, what: str = "output") -> Any:
    """``value`` (key None), ``value[key]`` for an int index into a tuple/list or a str key of a dict.

    Raises a ``KeyError``/``IndexError`` naming the key and what ``value`` holds, so a config whose
    ``pred_key`` does not fit the network says so instead of failing deep inside a metric.
    """
    if key is None:
        return value
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"{what} key must be None, an int index or a str key, got {key!r}")
    if isinstance(key, int):
        if not isinstance(value, (tuple, list)):
            raise IndexError(f"{what} key {key} is an index, but the {what} is a {type(value).__name__}, not a "
                             "tuple/list (use key null for a single-output network)")
        if not -len(value) <= key < len(value):
            raise IndexError(f"{what} key {key} is out of range: the {what} has {len(value)} entries")
        return value[key]
    if not isinstance(value, dict):
        raise KeyError(f"{what} key {key!r} names a dict entry, but the {what} is a {type(value).__name__}")
    if key not in value:
        raise KeyError(f"{what} has no key {key!r} (keys: {sorted(map(str, value))})")
    return value[key]


def _stack(items: Sequence[Any]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(i) for i in items])


def output_tensors(output: Any, pred_key: OutputKey = None, target_key: OutputKey = None
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, pred, target) batches from a MONAI engine's ``state.output``.

    ``output`` is one dict of batched values (``decollate=False``) or a list of per-sample dicts
    (decollated); ``pred_key``/``target_key`` pick the restoration output and target out of
    multi-output predictions and multi-target labels (see :func:`select_output`). The returned
    tensors are (N, C, *spatial).
    """
    keys = (CommonKeys.IMAGE, CommonKeys.PRED, CommonKeys.LABEL)
    if isinstance(output, (list, tuple)):
        cols = [[o[k] for o in output] for k in keys]
        image = _stack(cols[0])
        pred = _stack([select_output(p, pred_key, "pred") for p in cols[1]])
        target = _stack([select_output(t, target_key, "label") for t in cols[2]])
        return image, pred, target
    return (torch.as_tensor(output[CommonKeys.IMAGE]),
            torch.as_tensor(select_output(output[CommonKeys.PRED], pred_key, "pred")),
            torch.as_tensor(select_output(output[CommonKeys.LABEL], target_key, "label")))


def pred_target_transform(pred_key: OutputKey = None, target_key: OutputKey = None) -> Callable[[Any], Tuple]:
    """``output_transform`` for Ignite/MONAI metrics: ``(pred, target)`` of the named outputs.

    For a restoration metric on a multi-output network, e.g.
    ``"output_transform": "$genesis_monai.engines.pred_target_transform(0, 'restoration')"``.
    """

    def transform(output: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        _, pred, target = output_tensors(output, pred_key, target_key)
        return pred, target

    return transform


def scalars_transform(prefix: str = "loss") -> Callable[[Any], Optional[dict]]:
    """``output_transform`` for ``StatsHandler``/``TensorBoardStatsHandler``: every scalar output entry
    whose name starts with ``prefix`` (``loss`` and the per-term ``loss_<term>`` entries that
    :class:`~genesis_monai.engines.LossTermsHandler` adds), as a dict they log one by one."""

    def transform(output: Any) -> Optional[dict]:
        first = output[0] if isinstance(output, (list, tuple)) and output else output
        if not isinstance(first, dict):
            return None
        out = {}
        for k, v in first.items():
            if isinstance(k, str) and k.startswith(prefix) and (not isinstance(v, torch.Tensor) or v.numel() == 1):
                out[k] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        return out or None

    return transform
