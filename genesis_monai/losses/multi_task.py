"""A weighted sum of named loss terms, each reading its own network output and target.

Every method of the family trains on a sum of terms: Models Genesis one restoration MSE;
Semantic Genesis / TransVW ``1 * MSE(restored, original) + 0.01 * CE(class)``; SMART-Net
classification + segmentation + reconstruction + consistency. A bundle's recipe then reads as a
list of terms in its config::

    "loss": {
        "_target_": "genesis_monai.losses.MultiTaskLoss",
        "terms": {
            "restoration": {"loss": {"_target_": "torch.nn.MSELoss"}, "weight": 1.0,
                            "pred_key": 0, "target_key": "restoration"},
            "classification": {"loss": {"_target_": "torch.nn.CrossEntropyLoss"}, "weight": 0.01,
                               "pred_key": 1, "target_key": "class"}
        }
    }

and :class:`genesis_monai.engines.LossTermsHandler` puts each term's value into the trainer output
(``loss_restoration``, ``loss_classification``) for StatsHandler and TensorBoard.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Union

import torch
from torch import nn

from genesis_monai.engines.outputs import OutputKey, select_output

__all__ = ["LossTerm", "MultiTaskLoss"]


class LossTerm(nn.Module):
    """One weighted term: ``weight * loss(select(pred, pred_key), select(target, target_key))``.

    Args:
        loss: a loss module or callable ``(pred, target) -> scalar tensor``.
        weight: its weight in the total (>= 0; 0 keeps it logged but out of the gradient).
        pred_key, target_key: which network output and which target it reads (None = all of it;
            int = tuple index; str = dict key; see :func:`genesis_monai.engines.select_output`).
    """

    def __init__(self, loss: Callable[[Any, Any], torch.Tensor], weight: float = 1.0, pred_key: OutputKey = None,
                 target_key: OutputKey = None):
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss term: 'loss' must be callable, got {type(loss).__name__}")
        if float(weight) < 0:
            raise ValueError(f"loss term weight must be >= 0, got {weight}")
        self.loss = loss
        self.weight = float(weight)
        self.pred_key, self.target_key = pred_key, target_key

    def forward(self, pred: Any, target: Any) -> torch.Tensor:
        return self.loss(select_output(pred, self.pred_key, "pred"), select_output(target, self.target_key, "target"))

    def describe(self) -> Dict[str, Any]:
        """Plain description for provenance."""
        loss = self.loss
        name = f"{type(loss).__module__}.{type(loss).__qualname__}" if isinstance(loss, nn.Module) else repr(loss)
        return {"loss": name, "weight": self.weight, "pred_key": self.pred_key, "target_key": self.target_key}


class MultiTaskLoss(nn.Module):
    """``sum_k weight_k * term_k(pred, target)`` over named terms.

    Args:
        terms: name -> :class:`LossTerm`, or a mapping with the LossTerm arguments (``loss``,
            ``weight``, ``pred_key``, ``target_key``), as a bundle config writes them. Names must be
            identifiers (they become log tags ``loss_<name>``).

    After each call, :attr:`last_terms` holds every term's unweighted value (detached floats) and
    :attr:`last_total` the weighted sum, for logging.
    """

    def __init__(self, terms: Mapping[str, Union[LossTerm, Mapping[str, Any]]]):
        super().__init__()
        if not terms:
            raise ValueError("MultiTaskLoss needs at least one term")
        built = {}
        for name, term in terms.items():
            if not str(name).isidentifier():
                raise ValueError(f"loss term name {name!r} must be an identifier (it becomes the log tag loss_{name})")
            if isinstance(term, LossTerm):
                built[str(name)] = term
            elif isinstance(term, Mapping):
                unknown = set(term) - {"loss", "weight", "pred_key", "target_key"}
                if unknown or "loss" not in term:
                    raise ValueError(f"loss term {name!r}: expected keys loss, weight, pred_key, target_key; got "
                                     f"{sorted(term)}")
                built[str(name)] = LossTerm(**term)
            else:
                raise TypeError(f"loss term {name!r} must be a LossTerm or a mapping, got {type(term).__name__}")
        self.terms = nn.ModuleDict(built)
        self.last_terms: Dict[str, float] = {}
        self.last_total: float = float("nan")

    @property
    def weights(self) -> Dict[str, float]:
        return {name: term.weight for name, term in self.terms.items()}

    def forward(self, pred: Any, target: Any) -> torch.Tensor:
        values = {name: term(pred, target) for name, term in self.terms.items()}
        total = sum(self.terms[name].weight * v for name, v in values.items())
        self.last_terms = {name: float(v.detach()) for name, v in values.items()}
        self.last_total = float(total.detach())
        return total

    def describe(self) -> Dict[str, Any]:
        """Plain description of every term (for provenance): ``{"terms": {name: {loss, weight, pred_key, target_key}}}``."""
        return {"terms": {name: term.describe() for name, term in self.terms.items()}}
