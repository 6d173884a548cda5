"""Provenance stored inside checkpoints: what produced these weights (ModelsGenesis issue #29).

The record is built from the objects that actually ran - the resolved optimiser, scheduler,
degradation operator, loss, network and data loaders - not from literals in a config, so an
override on the command line (``--optimizer#lr 0.1``, another optimiser, another network) shows up
in the checkpoint as it was used. It is read when the checkpoint is saved, so live values (epochs
run, the degradation kernel that ran, the current learning rate) are current.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import platform
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

__all__ = ["Provenance", "describe_network", "describe_optimizer", "describe_scheduler", "describe_object",
           "describe_loader", "software_versions"]


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """Tuples/tensors/numbers/devices into JSON-like Python values (``weights_only`` loading stays possible)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 64 else f"tensor{tuple(value.shape)}"
    if hasattr(value, "tolist") and not isinstance(value, type):
        return value.tolist()
    if isinstance(value, str):
        return str(value)  # plain str: subclasses (e.g. TorchVersion) break weights_only loading
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return repr(value)


def software_versions() -> Dict[str, str]:
    """Versions of the packages that shape a run."""
    import ignite
    import monai
    import numpy

    from genesis_monai import __version__

    return {"genesis_monai": __version__, "torch": str(torch.__version__), "monai": str(monai.__version__),
            "ignite": str(ignite.__version__), "numpy": str(numpy.__version__), "python": platform.python_version()}


def _unwrap(net: nn.Module) -> nn.Module:
    # DDP / DataParallel / our output-activation wrapper / torch.compile keep the real network inside
    for attr in ("module", "_orig_mod"):
        inner = getattr(net, attr, None)
        if isinstance(inner, nn.Module):
            return _unwrap(inner)
    return net


def describe_network(net: nn.Module) -> Dict[str, Any]:
    """Class, constructor arguments (those readable back from the instance), size and an architecture
    fingerprint (SHA-256 of every state-dict key and shape: equal fingerprints = same architecture).

    Constructor arguments that the instance does not store under their own name are listed in
    ``args_unknown`` rather than guessed.
    """
    net = _unwrap(net)
    args, unknown = {}, []
    try:
        params = list(inspect.signature(type(net).__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        for attr in (p.name, "_" + p.name):
            if attr in vars(net) and not isinstance(vars(net)[attr], (nn.Module, torch.Tensor)):
                args[p.name] = _plain(vars(net)[attr])
                break
        else:
            unknown.append(p.name)
    state = net.state_dict()
    digest = hashlib.sha256("".join(f"{k}:{tuple(v.shape)};" for k, v in state.items()).encode()).hexdigest()
    return {"class": _qualname(net), "args": args, "args_unknown": unknown,
            "parameters": int(sum(p.numel() for p in net.parameters())), "state_dict_keys": len(state),
            "architecture_sha256": digest}


def describe_optimizer(optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """Class, hyperparameters (``optimizer.defaults``) and the learning rate(s) in force now."""
    return {"class": _qualname(optimizer), "hyperparameters": _plain(optimizer.defaults),
            "current_lr": [float(g["lr"]) for g in optimizer.param_groups if "lr" in g]}


def describe_scheduler(scheduler: Any) -> Dict[str, Any]:
    """Class and the scalar settings of a learning-rate scheduler (its ``state_dict`` minus the optimiser)."""
    state = scheduler.state_dict() if hasattr(scheduler, "state_dict") else {}
    settings = {k: _plain(v) for k, v in state.items()
                if k != "optimizer" and isinstance(v, (bool, int, float, str, list, tuple))}
    return {"class": _qualname(scheduler), "settings": settings}


def describe_object(obj: Any) -> Dict[str, Any]:
    """``obj.describe()`` when it has one (degradation operators, multi-task losses), else its class and repr."""
    if obj is None:
        return {}
    if callable(getattr(obj, "describe", None)):
        return {"class": _qualname(obj), **_plain(obj.describe())}
    return {"class": _qualname(obj), "repr": repr(obj)}


def describe_loader(loader: Any) -> Dict[str, Any]:
    """Batch size, sampler and size of a DataLoader, and the files of its dataset when it lists them."""
    dataset = getattr(loader, "dataset", None)
    out: Dict[str, Any] = {"batch_size": getattr(loader, "batch_size", None),
                           "drop_last": getattr(loader, "drop_last", None),
                           "sampler": _qualname(getattr(loader, "sampler", None)) if hasattr(loader, "sampler") else None}
    if dataset is not None:
        try:
            out["n_samples"] = len(dataset)
        except TypeError:
            out["n_samples"] = None
        files = getattr(dataset, "paths", None)  # CubeDataset: the cube files
        if files is None and isinstance(getattr(dataset, "data", None), (list, tuple)):
            files = [d.get("image") if isinstance(d, Mapping) else d for d in dataset.data]
        if files is not None:
            out["files"] = [str(f) for f in files]
            out["n_files"] = len(out["files"])
    return out


class Provenance:
    """A ``state_dict``-able record saved next to the weights by Ignite/MONAI checkpoint savers.

    Put it in a ``CheckpointSaver``'s ``save_dict`` as ``"provenance"`` and :meth:`attach` it to the
    trainer. Everything is described from the objects given here, at save time; all fields are
    plain Python values, so the checkpoint still loads with ``torch.load(..., weights_only=True)``.

    Args:
        method: e.g. ``"models_genesis"``.
        network: the network that trains (its class, readable constructor arguments, size).
        optimizer, lr_scheduler: described from the objects (class, hyperparameters, current lr).
        degradation: the degradation operator (``describe()``: every parameter and the kernel that ran).
        loss: the loss (``describe()`` of a MultiTaskLoss: terms and weights).
        train_loader, val_loader: batch size, sampler, sample counts and files of the data.
        settings: further plain settings worth keeping (e.g. the cube shape the data was cut to).
        data: a description of the data (folder, modality, ...).
        augmentation: a batch augmentation applied before the degradation (e.g. the Semantic Genesis
            elastic deformation), described like ``degradation``; None when there is none.
    """

    def __init__(self, method: str, network: Optional[nn.Module] = None, optimizer: Any = None,
                 lr_scheduler: Any = None, degradation: Any = None, loss: Any = None, train_loader: Any = None,
                 val_loader: Any = None, settings: Optional[Dict[str, Any]] = None,
                 data: Optional[Dict[str, Any]] = None, augmentation: Any = None):
        self.method = method
        self.objects = dict(network=network, optimizer=optimizer, lr_scheduler=lr_scheduler, degradation=degradation,
                            loss=loss, train_loader=train_loader, val_loader=val_loader,
                            augmentation=augmentation)
        self.record: Dict[str, Any] = {
            "method": method,
            "settings": _plain(settings or {}),
            "data": _plain(data or {}),
            "software": software_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "epochs_completed": 0,
            "iterations_completed": 0,
            "input_shape": None,
        }
        self._engine = None

    def attach(self, engine) -> None:
        """Read epoch/iteration counts and the first batch's input shape from ``engine`` (the trainer)."""
        from ignite.engine import Events

        self._engine = engine

        def first_batch(e) -> None:
            batch = e.state.batch
            x = batch.get("image") if isinstance(batch, Mapping) else batch[0] if isinstance(batch, (list, tuple)) else batch
            if hasattr(x, "shape"):
                self.record["input_shape"] = [int(s) for s in x.shape]

        engine.add_event_handler(Events.ITERATION_STARTED(once=1), first_batch)

    def state_dict(self) -> Dict[str, Any]:
        engine = self._engine
        if engine is not None:
            # read live: best-model savers run inside validation, before epoch-completed handlers
            self.record["epochs_completed"] = int(engine.state.epoch)
            self.record["iterations_completed"] = int(engine.state.iteration)
            self.record["max_epochs"] = int(engine.state.max_epochs or 0)
        o = self.objects
        live: Dict[str, Any] = {}
        if o["network"] is not None:
            live["network"] = describe_network(o["network"])
        if o["optimizer"] is not None:
            live["optimizer"] = describe_optimizer(o["optimizer"])
        if o["lr_scheduler"] is not None:
            live["lr_scheduler"] = describe_scheduler(o["lr_scheduler"])
        for key in ("degradation", "augmentation", "loss"):
            if o[key] is not None:
                live[key] = describe_object(o[key])
        for key, name in (("train_loader", "training_data"), ("val_loader", "validation_data")):
            if o[key] is not None:
                live[name] = describe_loader(o[key])
        return {**self.record, **live}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Keep a resumed run's record (creation time, settings) and add to it; live parts are re-read at save."""
        self.record.update({k: v for k, v in state.items() if k in self.record})
        self.record["resumed"] = list(state.get("resumed", [])) + [
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")]
