"""Every cube-extraction option, declared once: :class:`ExtractionOptions`.

The same dataclass is read by the per-volume extractor (:func:`genesis_monai.data.cubes.extract_cubes`),
the folder-level one (:func:`genesis_monai.data.extract.extract_cubes_from_folder`), the command line
(``python -m genesis_monai extract-cubes``, whose flags and help are built from the fields below) and
the bundles (:func:`genesis_monai.data.pretraining.resolve_pretraining_data`). Values are validated
once, when the object is made, so a bad name or value fails before any volume is read.

Each field's ``metadata`` holds its ``help`` text and where it is ``recorded`` in
``extraction_settings.json`` (the settings a resumed run must match): ``"cubes"`` (the per-volume
rule, under the ``"extract"`` key), ``"run"`` (top level), or None for options that change speed or
robustness but not the cubes (``method``, ``dicom_reader``, ``check_range``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from genesis_monai.data.folds import REFERENCE_SPLITS, fold_regex
from genesis_monai.data.intensity import INTENSITY_PRESETS, MODALITIES, MRI_NORMALIZATIONS, preset_name

__all__ = ["ExtractionOptions", "RULES", "METHODS", "DICOM_READERS", "as_extraction_options", "fitted_extraction",
           "FITTED_RULES"]

#: rejection rules: "lung" rejects crops whose dense score > lung_max (reference); "tissue" rejects
#: crops whose dense score < tissue_min (keep foreground); "off" accepts every candidate;
#: "auto" = "lung" for CT, "tissue" for MRI.
RULES = ("auto", "lung", "tissue", "off")
#: how candidates are scored (identical cubes, different speed): see extract_cubes
METHODS = ("auto", "gather", "table")
DICOM_READERS = ("auto", "itk", "pydicom")


def _option(default: Any, help: str, recorded: Optional[str] = "cubes") -> Any:
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, "recorded": recorded})
    return field(default=default, metadata={"help": help, "recorded": recorded})


def _numbers(value: Any, name: str, n: int, example: str) -> Tuple[float, ...]:
    """``n`` numbers from a sequence or a string like "8,8,4" / "8x8x4" / "(8, 8, 4)" (command lines)."""
    if isinstance(value, str):
        value = [v for v in re.split(r"[,x\s]+", value.strip("()[] ")) if v]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be {n} numbers like {example}, got {value!r}")
    return out


def _integers(value: Any, name: str, n: int, minimum: int, example: str) -> Tuple[int, ...]:
    out = _numbers(value, name, n, example)
    if not all(v.is_integer() and v >= minimum for v in out):
        raise ValueError(f"{name} must be {n} integers >= {minimum} like {example}, got {value!r}")
    return tuple(int(v) for v in out)


def _window(value: Any, name: str) -> Tuple[float, float]:
    lo, hi = _numbers(value, name, 2, "-1000,1000")
    if not hi > lo:
        raise ValueError(f"{name} must be (low, high) with high > low, got {value!r}")
    return lo, hi


def _integer(value: Any, name: str, minimum: int) -> int:
    out: Optional[int] = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        out = int(value)
    elif isinstance(value, (float, str)):
        try:
            f = float(value)
            out = int(f) if f.is_integer() else None
        except (ValueError, OverflowError):
            pass
    if out is None or out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def _number(value: Any, name: str, allow_inf: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(out) or (math.isinf(out) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def _choice(value: Any, name: str, choices: Tuple[str, ...]) -> str:
    out = str(value).lower()
    if out not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
    return out


@dataclass(frozen=True)
class ExtractionOptions:
    """How cubes are cut out of volumes (the reference LUNA16 recipe by default; METHODS.md §1).

    Make one with keywords (``ExtractionOptions(crop=(32, 32, 16), border=(8, 8, 4))``) or from a
    mapping with :meth:`from_mapping` (unknown names are refused, listing the known ones). Sequences
    may be given as strings (``"8,8,4"``, ``"8x8x4"``). Frozen: use :meth:`replace` for a variant.
    """

    scale: int = _option(32, "cubes per volume (32 in the paper)", "run")
    modality: str = _option("ct", "ct | mri | mri_fixed | mri_minmax (intensity presets of genesis_monai.data.intensity)",
                            "run")
    crop: Tuple[int, int, int] = _option((64, 64, 32), "cube size X,Y,Z in voxels")
    len_depth: int = _option(3, "look-ahead slices of the rejection rule (3 in the reference)")
    border: Tuple[int, int, int] = _option((100, 100, 30), "voxels kept free from the volume edges X,Y,Z "
                                           "(100,100,30; e.g. 8,8,4 for small volumes)")
    rule: str = _option("auto", "foreground rule: lung (reference, CT: reject dense crops) | tissue (keep dense "
                        "crops, other anatomy or MRI) | off | auto (lung for CT, tissue for MRI)")
    lung_max: float = _option(0.15, "lung rule: reject crops whose dense score exceeds this fraction of the cube")
    tissue_threshold_hu: float = _option(-150.0, "dense-voxel threshold in the volume's own units (HU for CT)")
    tissue_threshold: Optional[float] = _option(None, "dense-voxel threshold in normalised [0, 1] units "
                                                "(overrides tissue_threshold_hu; MRI default 0.05)")
    tissue_min: float = _option(0.5, "tissue rule: reject crops whose dense score is below this fraction")
    hu_window: Tuple[float, float] = _option(INTENSITY_PRESETS["ct"], "CT window mapped to [0, 1]")
    mri_window: Tuple[float, float] = _option(INTENSITY_PRESETS["mri_fixed"], "MRI clip range (fixed normalisation)")
    mri_normalization: str = _option("fixed", "fixed (mri_window) | minmax (each image's min..max, as the "
                                     "authors advise) for modality mri")
    window: Optional[Tuple[float, float]] = _option(None, "(low, high) overriding the window of any modality")
    tries_factor: int = _option(50, "at most tries_factor * scale candidates per volume")
    seed: int = _option(0, "random seed: each volume's cubes depend on it and the volume's relative path only",
                        "run")
    spacing: Optional[Tuple[float, float, float]] = _option(
        None, "resample to this spacing in mm first, e.g. 1,1,1 (default: native grid, as the reference)", "run")
    fold_pattern: str = _option("subset{fold}", "fold sub-folder name with {fold} (LUNA16: subset0 .. subset9)",
                                "run")
    splits: Dict[str, Tuple[int, ...]] = _option(dict(REFERENCE_SPLITS), "fold numbers per split "
                                                 "(reference: training 0-4, validation 5-6, test 7-9)", "run")
    method: str = _option("auto", "candidate scoring: gather | table | auto (same cubes, different speed)", None)
    dicom_reader: str = _option("auto", "DICOM reader: auto (itk if installed, else pydicom) | itk | pydicom", None)
    check_range: bool = _option(True, "skip volumes whose intensities do not fit the modality (with the reason)",
                                None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once, here
        set_(self, "scale", _integer(self.scale, "scale", 1))
        set_(self, "tries_factor", _integer(self.tries_factor, "tries_factor", 1))
        set_(self, "len_depth", _integer(self.len_depth, "len_depth", 1))
        set_(self, "seed", _integer(self.seed, "seed", 0))
        set_(self, "modality", _choice(self.modality, "modality", MODALITIES))
        set_(self, "mri_normalization", _choice(self.mri_normalization, "mri_normalization", MRI_NORMALIZATIONS))
        set_(self, "rule", _choice(self.rule, "rule", RULES))
        set_(self, "method", _choice(self.method, "method", METHODS))
        set_(self, "dicom_reader", _choice(self.dicom_reader, "dicom_reader", DICOM_READERS))
        set_(self, "crop", _integers(self.crop, "crop", 3, 1, "64,64,32"))
        set_(self, "border", _integers(self.border, "border", 3, 0, "100,100,30"))
        set_(self, "hu_window", _window(self.hu_window, "hu_window"))
        set_(self, "mri_window", _window(self.mri_window, "mri_window"))
        if self.window is not None:
            set_(self, "window", _window(self.window, "window"))
        if self.spacing is not None:
            spacing = _numbers(self.spacing, "spacing", 3, "1,1,1")
            if min(spacing) <= 0:
                raise ValueError(f"spacing must be 3 positive numbers in mm, got {self.spacing!r}")
            set_(self, "spacing", spacing)
        set_(self, "lung_max", _number(self.lung_max, "lung_max"))
        set_(self, "tissue_min", _number(self.tissue_min, "tissue_min"))
        set_(self, "tissue_threshold_hu", _number(self.tissue_threshold_hu, "tissue_threshold_hu", allow_inf=True))
        if self.tissue_threshold is not None:
            set_(self, "tissue_threshold", _number(self.tissue_threshold, "tissue_threshold", allow_inf=True))
        if not isinstance(self.check_range, bool):
            raise ValueError(f"check_range must be True or False, got {self.check_range!r}")
        fold_regex(self.fold_pattern)
        if not isinstance(self.splits, Mapping) or not self.splits:
            raise ValueError(f"splits must map split names to fold numbers, e.g. {dict(REFERENCE_SPLITS)}, "
                             f"got {self.splits!r}")
        try:
            splits = {str(k): tuple(_integer(f, f"splits[{k!r}] fold", 0) for f in v) for k, v in self.splits.items()}
        except TypeError:
            raise ValueError(f"splits must map split names to lists of fold numbers, got {self.splits!r}") from None
        set_(self, "splits", splits)

    # ------------------------------------------------------------------------------------------ #
    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, options: Optional[Mapping[str, Any]] = None, **more: Any) -> "ExtractionOptions":
        """Options from ``options`` (a mapping, e.g. a bundle config's ``cube_extraction``) updated by ``more``.

        Raises ValueError naming unknown keys and listing the known ones, or naming a bad value.
        """
        merged = {**dict(options or {}), **more}
        unknown = sorted(set(merged) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown cube extraction option(s) {unknown}; known: {sorted(cls.names())}")
        return cls(**merged)

    def replace(self, **changes: Any) -> "ExtractionOptions":
        """A copy with ``changes`` applied (validated like a new object; unknown names are refused)."""
        if not changes:
            return self
        return type(self).from_mapping(self.as_dict(), **changes)

    def as_dict(self) -> Dict[str, Any]:
        """Every option by name (tuples stay tuples)."""
        return {name: getattr(self, name) for name in self.names()}

    @property
    def preset(self) -> str:
        """The intensity preset in effect (``"mri"`` resolved by ``mri_normalization``)."""
        return preset_name(self.modality, self.mri_normalization)

    @property
    def effective_rule(self) -> str:
        """The rule in effect: ``"auto"`` is ``"lung"`` for CT and ``"tissue"`` for MRI."""
        if self.rule != "auto":
            return self.rule
        return "lung" if self.preset == "ct" else "tissue"

    def settings(self, layout: str) -> Dict[str, Any]:
        """The JSON record of ``extraction_settings.json``: what a resumed run must match.

        ``{"scale", "modality", "seed", "spacing", "fold_pattern", "layout", "splits", "extract": {the
        per-volume rule, sorted}}`` (lists, not tuples; ``layout`` is "subfolders" or "dealt").
        """
        run: Dict[str, Any] = {}
        cubes: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            target = {"run": run, "cubes": cubes}.get(f.metadata["recorded"])
            if target is not None:
                target[f.name] = _jsonable(getattr(self, f.name))
        record = {k: run[k] for k in ("scale", "modality", "seed", "spacing", "fold_pattern")}
        record.update(layout=layout, splits=run["splits"], extract=dict(sorted(cubes.items())))
        return record

    @classmethod
    def cli_help(cls) -> str:
        """``Args:`` lines for a command-line docstring (fire reads them for ``--help``; it adds the defaults)."""
        return "\n".join(f"    {f.name}: {f.metadata['help']}." for f in dataclasses.fields(cls))


def as_extraction_options(options: Any = None, **more: Any) -> ExtractionOptions:
    """``options`` (None, a mapping or an :class:`ExtractionOptions`) with ``more`` applied, validated."""
    if isinstance(options, ExtractionOptions):
        return options.replace(**more)
    return ExtractionOptions.from_mapping(options, **more)


#: the foreground rule :func:`fitted_extraction` picks for each intensity preset when none is asked for:
#: "tissue" (keep crops at least ``tissue_min`` = half dense: inside the body for CT at -150 HU, inside the
#: head/body for MRI above 5% of the window), because the reference "lung" rule keeps only crops that are
#: mostly air and so fits chest CT alone (abdominal CT or brain MRI would lose nearly every crop)
FITTED_RULES: Dict[str, str] = {"ct": "tissue", "mri_fixed": "tissue", "mri_minmax": "tissue"}


def fitted_extraction(
    modality: str,
    shapes: Sequence[Sequence[int]],
    crop: Sequence[int],
    *,
    foreground: Optional[str] = None,
    len_depth: int = 3,
) -> Dict[str, Any]:
    """Extraction settings that fit volumes of ``shapes`` under intensity preset ``modality``.

    * ``rule``: ``foreground`` when given ("lung" for chest CT, "tissue", "off"), else
      :data:`FITTED_RULES` of the preset ("tissue" for CT and MRI alike);
    * ``border`` per axis: the reference border (100, 100, 30) where the smallest volume leaves room for
      it, else a quarter of the spare room ``side - crop - 1`` (minus the ``len_depth`` look-ahead slices
      on Z), so that a 512x512x200 chest CT keeps the reference border and a 96x96x48 volume or a
      200x230x190 brain MRI still gives cubes from most of its extent.

    Args:
        modality: a name of :data:`~genesis_monai.data.intensity.MODALITIES`.
        shapes: (X, Y, Z) of the volumes (e.g. from their headers); the smallest per axis decides.
        crop: the cube (X, Y, Z).
        foreground: None, or a rule of :data:`RULES` other than "auto".
        len_depth: the rule's look-ahead slices (the reference's 3).

    Returns:
        ``{"modality", "rule", "border"}``: fields of :class:`ExtractionOptions` (every other field keeps
        its default; a caller's own options go on top).

    Raises:
        ValueError: no shapes, a bad rule, or a volume smaller than one crop.
    """
    preset = preset_name(modality)
    rule = FITTED_RULES[preset] if foreground is None else _choice(foreground, "foreground rule", RULES)
    if rule == "auto":
        raise ValueError("foreground must be lung, tissue or off (auto is what this function replaces)")
    sides = [tuple(int(v) for v in s[:3]) for s in shapes]
    if not sides:
        raise ValueError("fitted_extraction needs the shape of at least one volume")
    smallest = tuple(min(s[i] for s in sides) for i in range(3))
    extent = (int(crop[0]), int(crop[1]), int(crop[2]) + int(len_depth))
    spare = tuple(n - e - 1 for n, e in zip(smallest, extent))
    if min(spare) < 0:
        raise ValueError(f"the smallest volume {smallest} cannot hold one {crop[0]}x{crop[1]}x{crop[2]} cube "
                         f"(+{len_depth} look-ahead slices): lower cube_shape or leave such volumes out")
    reference = ExtractionOptions().border
    border = tuple(int(min(ref, room // 4)) for ref, room in zip(reference, spare))
    return {"modality": str(modality).lower(), "rule": rule, "border": border}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # -1000.0 -> -1000: settings files stay as earlier versions wrote them
    return value
