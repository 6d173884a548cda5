"""Provenance stored inside checkpoints: what produced these weights (ModelsGenesis issue #29)."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any, Dict, Optional

__all__ = ["Provenance"]


class Provenance:
    """A ``state_dict``-able record saved next to the weights by Ignite/MONAI checkpoint savers.

    Put it in a ``CheckpointSaver``'s ``save_dict`` as ``"provenance"``; attach it to the trainer
    so the epoch/iteration count is current. All fields are plain Python values, so the checkpoint
    still loads with ``torch.load(..., weights_only=True)``.

    Args:
        method: e.g. ``"models_genesis"``.
        config: free-form settings worth keeping (degradation rates, input shape, optimiser, ...).
        data: description of the pretraining data (folder, number of cubes, modality).
    """

    def __init__(self, method: str, config: Optional[Dict[str, Any]] = None, data: Optional[Dict[str, Any]] = None):
        from genesis_monai import __version__

        self.record: Dict[str, Any] = {
            "method": method,
            "config": _plain(config or {}),
            "data": _plain(data or {}),
            "genesis_monai_version": __version__,
            "python": platform.python_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "epochs_completed": 0,
            "iterations_completed": 0,
        }

    def attach(self, engine) -> None:
        """Read epoch/iteration counts from ``engine`` (the trainer) whenever the record is saved."""
        self._engine = engine

    def state_dict(self) -> Dict[str, Any]:
        import torch

        engine = getattr(self, "_engine", None)
        if engine is not None:
            # read live: best-model savers run inside validation, before epoch-completed handlers
            self.record["epochs_completed"] = int(engine.state.epoch)
            self.record["iterations_completed"] = int(engine.state.iteration)
        out = dict(self.record)
        out["torch"] = str(torch.__version__)
        return out

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.record.update(state)


def _plain(value: Any) -> Any:
    """Convert tuples/tensors/numbers into JSON-like Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, str):
        return str(value)  # plain str: subclasses (e.g. TorchVersion) break weights_only loading
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return repr(value)
