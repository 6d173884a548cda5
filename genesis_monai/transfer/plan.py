"""What one transfer comparison runs: :class:`TransferPlan`, its presets and its budget split.

A plan holds every setting of the comparison (network width, shapes, data split sizes, seeds, the
wall-clock budget and how it is split between the stages), so that the run, the table and
``results.json`` all read the same values. Two presets:

* ``"demo"`` (the default): the bundle's own demo caps (``demo_caps`` in its configs: the UNet3D at
  width 0.25, 32x32x16 cubes and patches, pretraining batch 8), sized to finish within 10 minutes
  on a 2-core CPU;
* ``"paper"``: the published width and shapes (the bundle's values with ``use_demo_caps`` false:
  width 1.0, 64x64x32 cubes and patches, batch 6, the published SGD) and a one-hour budget, for a GPU.

Both presets are read from the bundle's configs (:func:`preset_settings`), not copied here, so the
comparison runs what the bundle says.
"""

from __future__ import annotations

from genesis_monai.io_utils import jsonable

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

__all__ = ["TransferPlan", "PRESETS", "PRESET_DEFAULTS", "preset_settings", "make_plan", "ADAM_PRETRAINING"]

#: preset names of :func:`make_plan`
PRESETS: Tuple[str, ...] = ("demo", "paper")

#: the pretraining optimiser of the demo preset (a ``training.json`` ``optimizer`` value). In a budget of a
#: few minutes the published SGD at lr 1.0 (tuned for thousands of epochs) leaves the restoration error
#: near the constant-prediction level; Adam at 1e-3 learns within it (docs/demo.md). Recorded in provenance.
ADAM_PRETRAINING: Dict[str, Any] = {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-3}

#: settings of each preset that the bundle configs do not hold (data sizes, seeds, budget and its split).
#: demo split, chosen on validation volumes (docs/demo.md): on a 2-core CPU a fine-tune needs ~90 s (~130
#: iterations of 8 patches) before either initialisation leaves the "predict nothing" phase, and
#: restoration pretraining reaches its plateau (validation MSE ~0.03) within ~2 minutes; so 9 minutes give
#: pretraining 22% (119 s) and the four fine-tunes 68% (92 s each), the rest data, tests and pictures
PRESET_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "demo": {
        "n_volumes": 40, "volume_shape": (96, 96, 48), "volume_spacing": (10.0 / 3, 10.0 / 3, 20.0 / 3),
        "n_labeled": 2, "n_val": 4, "n_test": 8, "seeds": (0, 1),
        "budget_minutes": 9.0, "pretrain_fraction": 0.22, "finetune_fraction": 0.68,
        "val_interval": 16, "sw_overlap": 0.25, "num_workers": 0, "device": None,
        "pretrain_optimizer": ADAM_PRETRAINING, "cubes_per_volume": 16,
    },
    "paper": {
        "n_volumes": 120, "volume_shape": (128, 128, 64), "volume_spacing": (2.5, 2.5, 5.0),
        "n_labeled": 2, "n_val": 8, "n_test": 20, "seeds": (0, 1, 2),
        "budget_minutes": 60.0, "pretrain_fraction": 0.40, "finetune_fraction": 0.45,
        "val_interval": 20, "sw_overlap": 0.25, "num_workers": 2, "device": "cuda",
        "pretrain_optimizer": None, "cubes_per_volume": 32,
    },
}


def preset_settings(bundle_root: str, preset: str) -> Dict[str, Any]:
    """The network width, cube and patch shapes and pretraining batch size of ``preset``, read from the bundle.

    ``"demo"`` resolves the configs with ``use_demo_caps`` true (their ``demo_caps``), ``"paper"`` with it
    false (the published recipe). Returns ``{"width", "cube_shape", "patch_size", "pretrain_batch_size"}``.
    """
    from genesis_monai.bundles import bundle_parser

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    caps = {"use_demo_caps": preset == "demo"}
    pre = bundle_parser(bundle_root, "training.json", caps)
    fine = bundle_parser(bundle_root, "train.json", caps)
    return {
        "width": float(pre.get_parsed_content("network_width")),
        "cube_shape": tuple(int(s) for s in pre.get_parsed_content("cube_shape")),
        "patch_size": tuple(int(s) for s in fine.get_parsed_content("patch_size")),
        "pretrain_batch_size": int(pre.get_parsed_content("batch_size")),
    }


def _shape(value: Any, name: str) -> Tuple[int, int, int]:
    from genesis_monai.networks import check_spatial_size

    try:
        shape = tuple(int(v) for v in value)
        if len(shape) != 3 or any(float(s) != float(v) for s, v in zip(shape, value)):
            raise ValueError
        check_spatial_size([1, 1, *shape])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be 3 positive integers (X, Y, Z) each divisible by 8, got {value!r}"
                         f"{': ' + str(err) if str(err) else ''}") from None
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class TransferPlan:
    """Every setting of one pretrained-vs-scratch comparison (validated when made; frozen).

    Attributes:
        bundle: bundle folder name (its training.json, train.json and inference.json run every stage).
        preset: ``"demo"`` or ``"paper"`` (where the defaults came from).
        width: network width multiplier (``network_width``; 1.0 = the published UNet3D).
        cube_shape: pretraining cube (X, Y, Z), each divisible by 8.
        patch_size: fine-tuning crop and sliding-window size (X, Y, Z), each divisible by 8.
        pretrain_batch_size: cubes per pretraining batch.
        pretrain_optimizer: the ``optimizer`` value for training.json, or None for the bundle's own.
        n_labeled: labeled volumes each fine-tune trains on (the same ones for every seed and init).
        n_val: validation volumes (model selection: best-validation checkpoint).
        n_test: held-out test volumes, in neither the pretraining nor the fine-tuning data.
        seeds: fine-tuning seeds, each run for both initialisations; pretraining uses ``seeds[0]``.
        budget_minutes: wall-clock budget of the whole job.
        pretrain_fraction: share of the budget for pretraining.
        finetune_fraction: share of the budget for all fine-tunes together (2 x len(seeds) runs).
        val_interval: fine-tuning epochs between validations (an epoch is one pass over the labeled volumes).
        sw_overlap: sliding-window overlap for validation and test inference.
        num_workers: data-loader workers of every stage.
        device: torch device string ("cpu", "cuda", "cuda:1"); None = CUDA when available.
        modality: intensity preset of the data ("ct", "mri", "mri_fixed", "mri_minmax").
        extraction: cube-extraction options (fields of ExtractionOptions, crop excluded).
        overrides: config ids set in every stage config that defines them (e.g. ``network_def#width``).
        stage_overrides: ``{"discovery" | "pretrain" | "finetune" | "inference": {id: value}}`` for one stage
            only (discovery: bundles with ``configs/discovery.json``).
        evaluate_test: segment and score the test volumes (False while choosing settings on validation).
    """

    bundle: str = "models_genesis"
    preset: str = "demo"
    width: float = 0.25
    cube_shape: Tuple[int, int, int] = (32, 32, 16)
    patch_size: Tuple[int, int, int] = (32, 32, 16)
    pretrain_batch_size: int = 8
    pretrain_optimizer: Optional[Dict[str, Any]] = None
    n_labeled: int = 2
    n_val: int = 4
    n_test: int = 8
    seeds: Tuple[int, ...] = (0, 1)
    budget_minutes: float = 9.0
    pretrain_fraction: float = 0.22
    finetune_fraction: float = 0.68
    val_interval: int = 16
    sw_overlap: float = 0.25
    num_workers: int = 0
    device: Optional[str] = None
    modality: str = "ct"
    extraction: Dict[str, Any] = field(default_factory=dict)
    overrides: Dict[str, Any] = field(default_factory=dict)
    stage_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    evaluate_test: bool = True

    def __post_init__(self) -> None:
        from genesis_monai.data.intensity import MODALITIES

        set_ = object.__setattr__
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {PRESETS}")
        width = float(self.width)
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        set_(self, "width", width)
        set_(self, "cube_shape", _shape(self.cube_shape, "cube_shape"))
        set_(self, "patch_size", _shape(self.patch_size, "patch_size"))
        for name, minimum in (("pretrain_batch_size", 1), ("n_labeled", 1), ("n_val", 1), ("n_test", 1),
                              ("val_interval", 1), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            set_(self, name, int(value))
        seeds = (self.seeds,) if isinstance(self.seeds, int) else tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or int(s) != s or int(s) < 0 for s in seeds) or \
                len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct integers >= 0, got {self.seeds!r}")
        set_(self, "seeds", tuple(int(s) for s in seeds))
        budget = float(self.budget_minutes)
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget_minutes must be a positive number, got {self.budget_minutes!r}")
        set_(self, "budget_minutes", budget)
        pre, fine = float(self.pretrain_fraction), float(self.finetune_fraction)
        if not (0 < pre < 1 and 0 < fine < 1 and pre + fine < 1):
            raise ValueError(f"pretrain_fraction ({pre}) and finetune_fraction ({fine}) must be in (0, 1) with a sum "
                             "below 1 (the rest is for data, validation at the end, inference and pictures)")
        set_(self, "pretrain_fraction", pre)
        set_(self, "finetune_fraction", fine)
        overlap = float(self.sw_overlap)
        if not 0 <= overlap < 1:
            raise ValueError(f"sw_overlap must be in [0, 1), got {self.sw_overlap!r}")
        set_(self, "sw_overlap", overlap)
        if str(self.modality).lower() not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; choose one of {MODALITIES}")
        set_(self, "modality", str(self.modality).lower())
        if "crop" in (self.extraction or {}):
            raise ValueError("extraction: set cube_shape, not crop (the cubes are cut at cube_shape)")
        unknown = set(self.stage_overrides) - {"discovery", "pretrain", "finetune", "inference"}
        if unknown:
            raise ValueError(f"stage_overrides keys must be discovery / pretrain / finetune / inference, got "
                             f"{sorted(unknown)}")
        if not isinstance(self.evaluate_test, bool):
            raise ValueError(f"evaluate_test must be True or False, got {self.evaluate_test!r}")
        set_(self, "extraction", dict(self.extraction or {}))
        set_(self, "overrides", dict(self.overrides or {}))
        set_(self, "stage_overrides", {k: dict(v) for k, v in (self.stage_overrides or {}).items()})

    # ------------------------------------------------------------------------------------------ #
    @property
    def n_finetunes(self) -> int:
        """Fine-tuning runs: one per seed and initialisation."""
        return 2 * len(self.seeds)

    @property
    def pretrain_seconds(self) -> float:
        """Pretraining budget (s): ``pretrain_fraction`` of the whole budget."""
        return 60.0 * self.budget_minutes * self.pretrain_fraction

    @property
    def finetune_seconds(self) -> float:
        """Budget (s) of each fine-tune: ``finetune_fraction`` of the whole budget over :attr:`n_finetunes`."""
        return 60.0 * self.budget_minutes * self.finetune_fraction / self.n_finetunes

    def budget_warnings(self) -> Tuple[str, ...]:
        """Readable warnings about a budget split that cannot show transfer fairly (empty when fine)."""
        out = []
        if self.pretrain_seconds < self.finetune_seconds:
            out.append(f"pretraining gets {self.pretrain_seconds:.0f} s, less than one fine-tune "
                       f"({self.finetune_seconds:.0f} s): raise pretrain_fraction")
        if len(self.seeds) < 2:
            out.append("one fine-tuning seed gives no spread: use at least 2 seeds")
        return tuple(out)

    def replace(self, **changes: Any) -> "TransferPlan":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        """Every setting, JSON-ready (tuples as lists), plus the derived stage budgets in seconds."""
        out = {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out.update(pretrain_seconds=self.pretrain_seconds, finetune_seconds=self.finetune_seconds)
        return out



def make_plan(bundle_root: str, bundle: str = "models_genesis", preset: str = "demo",
              **settings: Any) -> Tuple[TransferPlan, Dict[str, Any]]:
    """``(plan, data_settings)`` for ``preset`` with ``settings`` (plan fields or data settings) applied.

    Values given as None keep the preset's. ``data_settings`` holds the preset's demo-data values
    (``n_volumes``, ``volume_shape``, ``volume_spacing``, ``cubes_per_volume``) updated by ``settings``.
    A ``network_def#width`` in ``overrides`` also sets the plan's width (so the table reports it).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    defaults = dict(PRESET_DEFAULTS[preset])
    data_keys = ("n_volumes", "volume_shape", "volume_spacing", "cubes_per_volume")
    given = {k: v for k, v in settings.items() if v is not None}
    data = {k: given.pop(k, defaults.pop(k)) for k in data_keys}
    fields = {f.name for f in dataclasses.fields(TransferPlan)}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; plan settings: {sorted(fields)}, data settings: {list(data_keys)}")
    values: Dict[str, Any] = {**preset_settings(bundle_root, preset), **defaults, **given}
    width = dict(values.get("overrides") or {}).get("network_def#width")
    if width is not None:
        values["width"] = float(width)
    return TransferPlan(bundle=bundle, preset=preset, **values), data
