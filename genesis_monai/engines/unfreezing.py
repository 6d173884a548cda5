"""Gradual unfreezing of a pretrained encoder during fine-tuning (SMART-Net downstream).

SMART-Net's 2D->3D transfer keeps the upstream encoder frozen for the first epochs, then hands one
ResNet stage back to the optimiser every 10 epochs, deepest first. The optimiser holds every
parameter from the start: a frozen parameter simply gets no gradient (``requires_grad=False``,
``grad=None``), so Adam/AdamW skip it, weight decay included.

Epoch convention: a stage's epoch is the number of COMPLETED epochs after which it trains. With
Ignite's 1-based ``engine.state.epoch`` (already incremented when ``EPOCH_STARTED`` fires), stage
``[e, prefixes]`` is unfrozen at the start of Ignite epoch ``e + 1``, which is the reference's 0-based
epoch ``e``. The paper-era reference (2022 code) freezes its 0-based epochs 0..100 and unfreezes
``layer4`` from 0-based epoch 101 on, i.e. after 101 completed epochs: :data:`SMART_NET_UNFREEZING`.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["GradualUnfreezing", "SMART_NET_UNFREEZING", "parse_unfreezing_schedule"]

logger = logging.getLogger(__name__)

#: the paper-era SMART-Net schedule (completed epochs -> prefixes): 0-based epochs 0..100 frozen,
#: layer4 from 101, layer3 from 111, layer2 from 121, layer1 from 131, the whole encoder (stem) from 141.
SMART_NET_UNFREEZING: List[List[Any]] = [
    [101, "encoder.layer4."],
    [111, "encoder.layer3."],
    [121, "encoder.layer2."],
    [131, "encoder.layer1."],
    [141, "encoder."],
]

Schedule = Union[Sequence[Sequence[Any]], Mapping[str, Sequence[Any]]]


def _prefix_list(value: Any, what: str) -> List[str]:
    prefixes = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise ValueError(f"GradualUnfreezing: {what} must be a non-empty prefix string or list of them, got {value!r}")
    return prefixes


def parse_unfreezing_schedule(schedule: Optional[Schedule]) -> List[Tuple[int, List[str]]]:
    """Normalise a schedule to ``[(completed_epochs, [prefix, ...]), ...]`` sorted by epoch.

    Accepted forms (plain JSON values): ``[[epoch, prefix_or_prefixes], ...]`` or
    ``{"epochs": [e1, e2, ...], "stages": [prefixes1, prefixes2, ...]}``; ``None`` is
    :data:`SMART_NET_UNFREEZING`, ``[]`` means frozen throughout (the reference without gradual unfreezing).
    """
    if schedule is None:
        schedule = SMART_NET_UNFREEZING
    if isinstance(schedule, Mapping):
        if set(schedule) != {"epochs", "stages"}:
            raise ValueError(f"GradualUnfreezing: a dict schedule needs exactly the keys 'epochs' and 'stages', "
                             f"got {sorted(schedule)}")
        epochs, stages = list(schedule["epochs"]), list(schedule["stages"])
        if len(epochs) != len(stages):
            raise ValueError(f"GradualUnfreezing: schedule has {len(epochs)} epochs but {len(stages)} stages")
        pairs = list(zip(epochs, stages))
    elif isinstance(schedule, (list, tuple)):
        pairs = []
        for item in schedule:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(f"GradualUnfreezing: schedule entries must be [epoch, prefixes] pairs, got {item!r}")
            pairs.append((item[0], item[1]))
    else:
        raise TypeError(f"GradualUnfreezing: schedule must be a list of [epoch, prefixes] pairs or a dict "
                        f"{{'epochs': [...], 'stages': [...]}}, got {type(schedule).__name__}")
    parsed = []
    for epoch, prefixes in pairs:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"GradualUnfreezing: stage epochs must be integers >= 0 (completed epochs), got {epoch!r}")
        parsed.append((int(epoch), _prefix_list(prefixes, f"the stage at epoch {epoch}")))
    return sorted(parsed, key=lambda pair: pair[0])


def _unwrap(network: nn.Module) -> nn.Module:
    # DataParallel / DistributedDataParallel prefix every name with "module."; prefixes name the bare model
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return network.module
    return network


def _matches(name: str, prefix: str) -> bool:
    return name.startswith(prefix)


class GradualUnfreezing:
    """Ignite handler: freeze parameter groups at the start of training, unfreeze them stage by stage.

    At ``STARTED`` every parameter whose name starts with one of ``frozen`` gets
    ``requires_grad=False`` (and ``grad=None``); at every ``EPOCH_STARTED`` the stages whose epoch
    has passed (``stage_epoch <= engine.state.epoch - 1`` completed epochs, see the module docstring)
    get ``requires_grad=True`` again. The wanted state is recomputed from the epoch counter each time,
    so a resumed run (``engine.state.epoch > 0`` restored at ``STARTED``, whatever the handler order)
    gets every stage that had passed, and nothing has to be saved in the checkpoint. Every change is
    logged once, e.g. ``unfrozen encoder.layer4. at epoch 102 (14964736 params)`` (Ignite epoch,
    parameter elements).

    Parameters outside ``frozen`` are never touched. A prefix (frozen or stage) that matches no
    parameter, or a stage prefix that matches parameters outside ``frozen``, is an error at
    construction and again at :meth:`attach`, naming the prefix and a few existing names.

    BatchNorm: the reference only toggles ``requires_grad``, so frozen BatchNorm layers keep
    normalising with batch statistics and keep updating their running mean/var in train mode
    (``freeze_batchnorm=False``, the default). ``freeze_batchnorm=True`` puts the BatchNorm modules
    whose parameters are all frozen into eval mode for every forward pass (a forward pre-hook, since
    MONAI's ``SupervisedTrainer`` calls ``network.train()`` every iteration), so their statistics stay
    the pretrained ones until their stage is unfrozen.

    Under DDP wrap the network with ``find_unused_parameters=True``: the set of parameters receiving
    gradients changes during training.

    Args:
        network: the model (DataParallel/DDP wrappers are unwrapped; prefixes name the bare model's
            parameters, e.g. ``encoder.layer4.``).
        frozen: parameter-name prefixes frozen at the start of training.
        schedule: ``[[completed_epochs, prefix_or_prefixes], ...]`` or ``{"epochs": [...], "stages": [...]}``;
            ``None`` = :data:`SMART_NET_UNFREEZING`; ``[]`` = frozen throughout.
        freeze_batchnorm: also keep frozen BatchNorm layers in eval mode (see above).
    """

    def __init__(self, network: nn.Module, frozen: Union[str, Sequence[str]] = ("encoder.",),
                 schedule: Optional[Schedule] = None, freeze_batchnorm: bool = False) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"GradualUnfreezing: network must be a torch.nn.Module, got {type(network).__name__}")
        if isinstance(network, nn.parallel.DistributedDataParallel) and not network.find_unused_parameters:
            logger.warning("GradualUnfreezing: the DistributedDataParallel network was built with "
                           "find_unused_parameters=False; frozen parameters get no gradient, so DDP needs "
                           "find_unused_parameters=True")
        self.network = _unwrap(network)
        self.frozen = _prefix_list(list(frozen) if isinstance(frozen, tuple) else frozen, "frozen")
        self.stages = parse_unfreezing_schedule(schedule)
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self._params: Dict[str, nn.Parameter] = dict(self.network.named_parameters())
        self._check_prefixes()
        self._applied: List[int] = []  # indices of the stages already unfrozen (and logged)
        self._frozen_names: set = set()
        self._frozen_bn: set = set()  # ids of BatchNorm modules kept in eval mode (freeze_batchnorm)
        self._bn_handles: Dict[int, Any] = {}  # forward pre-hooks installed on those modules
        self._started = False
        self._completed_epochs = 0

    # ----------------------------------------------------------------------------------------- checks
    def _names(self, prefix: str) -> List[str]:
        return [n for n in self._params if _matches(n, prefix)]

    def _check_prefixes(self) -> None:
        examples = list(self._params)[:3] + (["..."] if len(self._params) > 6 else []) + list(self._params)[-3:]
        for prefix in self.frozen + [p for _, stage in self.stages for p in stage]:
            if not self._names(prefix):
                raise ValueError(f"GradualUnfreezing: prefix {prefix!r} matches no parameter of "
                                 f"{type(self.network).__name__} (parameter names look like {examples})")
        for epoch, stage in self.stages:
            for prefix in stage:
                outside = [n for n in self._names(prefix) if not any(_matches(n, f) for f in self.frozen)]
                if outside:
                    raise ValueError(f"GradualUnfreezing: stage prefix {prefix!r} (epoch {epoch}) matches parameters "
                                     f"outside the frozen prefixes {self.frozen}, e.g. {outside[:3]}")

    # ------------------------------------------------------------------------------------ mechanics
    def _under_frozen(self, name: str) -> bool:
        return any(_matches(name, f) for f in self.frozen)

    def _wanted(self, completed_epochs: int) -> Tuple[set, List[int], List[str]]:
        """(names frozen after ``completed_epochs``, indices of due stages, their prefixes)."""
        due = [i for i, (epoch, _) in enumerate(self.stages) if epoch <= completed_epochs]
        thawed = [p for i in due for p in self.stages[i][1]]
        names = {n for n in self._params if self._under_frozen(n) and not any(_matches(n, p) for p in thawed)}
        return names, due, thawed

    def apply(self, completed_epochs: int) -> None:
        """Set ``requires_grad`` to the state after ``completed_epochs`` epochs (idempotent; logs changes)."""
        completed_epochs = int(completed_epochs)
        names, due, thawed_prefixes = self._wanted(completed_epochs)
        # before the first call everything under `frozen` counts as frozen, so a resumed run logs its stages
        before = self._frozen_names if self._started else {n for n in self._params if self._under_frozen(n)}
        refrozen = names - before
        for name, param in self._params.items():
            if name in names:
                param.requires_grad_(False)
                param.grad = None  # a stale gradient would still move Adam's moments and apply weight decay
            elif self._under_frozen(name):
                param.requires_grad_(True)
        if not self._started or refrozen:
            logger.info("frozen %s (%d params)", ", ".join(self.frozen), self._numel(names))
        self._applied = [i for i in self._applied if i in due]  # a run restarted at an earlier epoch re-logs
        counted: set = set()
        newly_thawed = before - names
        for i in due:
            if i in self._applied:
                continue
            prefixes = self.stages[i][1]
            stage_names = {n for n in newly_thawed - counted if any(_matches(n, p) for p in prefixes)}
            counted |= stage_names
            logger.info("unfrozen %s at epoch %d (%d params)", ", ".join(prefixes), completed_epochs + 1,
                        self._numel(stage_names))
            self._applied.append(i)
        self._started = True
        self._completed_epochs = completed_epochs
        self._frozen_names = names
        if self.freeze_batchnorm:
            self._update_bn(names, thawed_prefixes)

    def _numel(self, names: set) -> int:
        return int(sum(self._params[n].numel() for n in names))

    # -------------------------------------------------------------------------------------- BatchNorm
    def _update_bn(self, frozen_names: set, thawed_prefixes: List[str]) -> None:
        frozen_bn = set()
        for module_name, module in self.network.named_modules():
            if not isinstance(module, _BatchNorm):
                continue
            key = f"{module_name}."
            params = [key + n for n, _ in module.named_parameters(recurse=False)]
            if params:  # affine BN: frozen when all its parameters are
                is_frozen = all(n in frozen_names for n in params)
            else:  # no parameters: follows its module name
                is_frozen = self._under_frozen(key) and not any(_matches(key, p) for p in thawed_prefixes)
            if is_frozen:
                frozen_bn.add(id(module))
            elif id(module) in self._frozen_bn:
                module.train(self.network.training)  # thawed: follow the network's mode again right away
            if id(module) not in self._bn_handles and (is_frozen or self._under_frozen(key)):
                self._bn_handles[id(module)] = module.register_forward_pre_hook(self._bn_hook)
        self._frozen_bn = frozen_bn

    def _bn_hook(self, module: nn.Module, args: Any) -> None:
        # MONAI trainers call network.train() every iteration: force eval mode again right before the forward
        if id(module) in self._frozen_bn and module.training:
            module.eval()

    # ----------------------------------------------------------------------------------------- Ignite
    def attach(self, engine: Any) -> None:
        """Freeze at ``STARTED``, unfreeze due stages at every ``EPOCH_STARTED`` of ``engine``."""
        from ignite.engine import Events

        # re-read the parameters: the network may have been rebuilt or moved since construction
        self._params = dict(self.network.named_parameters())
        self._check_prefixes()
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)

    def _on_started(self, engine: Any) -> None:
        # a resumed run may already have engine.state.epoch > 0 here (or get it from a later STARTED handler;
        # EPOCH_STARTED then catches up)
        self.apply(int(engine.state.epoch or 0))

    def _on_epoch_started(self, engine: Any) -> None:
        # Ignite has already incremented state.epoch for the epoch that starts now
        self.apply(int(engine.state.epoch) - 1)

    def state(self) -> Dict[str, Any]:
        """Where the schedule stands: completed epochs, unfrozen stages, frozen/trainable parameter counts."""
        trainable = {n for n, p in self._params.items() if p.requires_grad}
        return {
            "completed_epochs": self._completed_epochs,
            "unfrozen_stages": [[self.stages[i][0], list(self.stages[i][1])] for i in sorted(self._applied)],
            "pending_stages": [[e, list(p)] for i, (e, p) in enumerate(self.stages) if i not in self._applied],
            "frozen_params": self._numel(set(self._params) - trainable),
            "trainable_params": self._numel(trainable),
        }
