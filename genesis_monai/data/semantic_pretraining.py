"""What Semantic Genesis / TransVW pretraining reads: pattern files, found or discovered (``training.json``'s ``data``).

:func:`resolve_pattern_data` takes the bundle's ``dataset_dir`` and returns the ``{"training",
"validation"}`` records that :class:`~genesis_monai.data.PatternDataset` reads:

1. ``dataset_dir`` holds pattern files in the reference layout (``train_data1_vwGen_ex_ref_fold1.0.npy``
   ..., e.g. the published ``TransVW_data.zip`` unzipped): they are used as they are;
2. the patterns folder (``patterns_dir``, default ``dataset_dir/patterns_{X}x{Y}x{Z}``) holds a finished
   discovery (its ``datalist.json``): it is reused;
3. otherwise ``dataset_dir`` holds volumes: self-discovery runs first, through the bundle's own
   ``configs/discovery.json`` (auto-encoder training, features, pattern generation), and writes the
   patterns folder that later runs reuse.

:func:`discovery_volumes` lists the volumes discovery reads (training / validation), and
:func:`discover_patterns` is the ``patterns`` id of ``discovery.json``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["resolve_pattern_data", "discovery_volumes", "discover_patterns", "patterns_folder", "DISCOVERY_DATALIST"]

logger = logging.getLogger(__name__)

#: the datalist a finished discovery writes in its folder (written last: its presence means "complete")
DISCOVERY_DATALIST = "datalist.json"


def patterns_folder(dataset_dir: str, patterns_dir: Optional[str], cube_shape: Sequence[int]) -> str:
    """``patterns_dir`` if given, else ``dataset_dir/patterns_{X}x{Y}x{Z}`` (absolute)."""
    if patterns_dir:
        return os.path.abspath(os.path.expanduser(str(patterns_dir)))
    return os.path.join(os.path.abspath(os.path.expanduser(str(dataset_dir))),
                        "patterns_{}x{}x{}".format(*(int(s) for s in cube_shape)))


def discovery_volumes(dataset_dir: str, datalist_file: str = "dataset.json", val_fraction: float = 0.1,
                      exclude: Sequence[str] = ()) -> Dict[str, List[Dict[str, str]]]:
    """``{"training": [{"image": path}], "validation": [...]}``: the volumes self-discovery reads.

    With a Decathlon-style datalist in ``dataset_dir``, its ``training`` and ``validation`` images
    (labels are not used; ``test`` images are left out, so that they stay unseen). Without one, every
    volume under ``dataset_dir`` (except folders in ``exclude`` and derived ``cubes_*`` / ``patterns_*``
    folders), sorted, the last ``val_fraction`` (at least 1) for validation.
    """
    from genesis_monai.data.datalist import ensure_dataset_dir
    from genesis_monai.data.readers import list_volumes

    dataset_dir = ensure_dataset_dir(dataset_dir)
    datalist = os.path.join(dataset_dir, str(datalist_file))
    if os.path.isfile(datalist):
        with open(datalist) as f:
            content = json.load(f)
        out = {}
        for split in ("training", "validation"):
            entries = content.get(split) or []
            out[split] = [{"image": os.path.join(dataset_dir, e["image"] if isinstance(e, Mapping) else e)}
                          for e in entries]
        if out["training"] and out["validation"]:
            return out
        raise ValueError(f"{datalist}: self-discovery needs volumes in both 'training' and 'validation' "
                         f"(found {len(out['training'])} and {len(out['validation'])})")
    derived = [os.path.join(dataset_dir, n) for n in os.listdir(dataset_dir)
               if n.startswith(("cubes_", "patterns_")) and os.path.isdir(os.path.join(dataset_dir, n))]
    paths = sorted(list_volumes(dataset_dir, exclude=list(exclude) + derived))
    if len(paths) < 2:
        raise ValueError(f"dataset_dir {dataset_dir!r} holds {len(paths)} volume(s): self-discovery needs training "
                         "and validation volumes (or pass pattern files in the reference layout)")
    n_val = max(1, int(round(float(val_fraction) * len(paths))))
    return {"training": [{"image": p} for p in paths[:-n_val]], "validation": [{"image": p} for p in paths[-n_val:]]}


def _finished_discovery(folder: str) -> Optional[Dict[str, List[dict]]]:
    from genesis_monai.data.pattern_files import find_pattern_files

    if not os.path.isfile(os.path.join(folder, DISCOVERY_DATALIST)):
        return None
    found = find_pattern_files(folder)
    return found if found["training"] and found["validation"] else None


def resolve_pattern_data(
    dataset_dir: str,
    bundle_root: str = ".",
    patterns_dir: Optional[str] = None,
    n_classes: Optional[int] = None,
    cube_shape: Sequence[int] = (64, 64, 32),
    device: Any = None,
    seed: int = 0,
    overrides: Optional[Mapping[str, Any]] = None,
    resolutions: Optional[Sequence[int]] = None,
) -> Dict[str, List[dict]]:
    """Return ``{"training": [...], "validation": [...]}`` pattern-file records (see the module doc).

    Args:
        dataset_dir: pattern files, or volumes (a Decathlon-style datalist or a plain folder).
        bundle_root: the bundle whose ``configs/discovery.json`` runs when discovery is needed.
        patterns_dir: where discovered patterns go (default ``dataset_dir/patterns_{X}x{Y}x{Z}``).
        n_classes: classes the pretraining uses (checked by :class:`PatternDataset`; discovery makes at
            least these many unless ``overrides`` says otherwise).
        cube_shape: crop (X, Y, Z) of discovered patterns.
        device, seed: of the discovery run.
        overrides: more ``discovery.json`` ids (e.g. ``{"feature_weights": "models/pretrained.pt"}``).
        resolutions: training resolutions to read (default all: 1 and, with multi-resolution crops, 2 and 3).
    """
    from genesis_monai.data.datalist import ensure_dataset_dir
    from genesis_monai.data.pattern_files import find_pattern_files

    dataset_dir = ensure_dataset_dir(dataset_dir)
    given = find_pattern_files(dataset_dir, resolutions)
    if given["training"]:
        if not given["validation"]:
            raise ValueError(f"{dataset_dir}: pattern files for training but none for validation (val_data1_"
                             "vwGen_ex_ref_fold{k}.0.npy)")
        logger.info("pretraining on the pattern files in %s", dataset_dir)
        return given
    folder = patterns_folder(dataset_dir, patterns_dir, cube_shape)
    done = _finished_discovery(folder)
    if done is None:
        logger.warning("no discovered patterns in %s: running self-discovery (configs/discovery.json: auto-encoder, "
                       "features, pattern generation) first; later runs reuse them", folder)
        run_discovery(bundle_root, dataset_dir, folder, cube_shape, device, seed, n_classes, overrides)
        done = _finished_discovery(folder)
        if done is None:
            raise RuntimeError(f"self-discovery ended without writing {os.path.join(folder, DISCOVERY_DATALIST)}")
    else:
        logger.info("pretraining on the patterns discovered earlier in %s", folder)
    return find_pattern_files(folder, resolutions)


def run_discovery(bundle_root: str, dataset_dir: str, patterns_dir: str, cube_shape: Sequence[int], device: Any,
                  seed: int, n_classes: Optional[int], overrides: Optional[Mapping[str, Any]]) -> None:
    """Run ``bundle_root/configs/discovery.json`` (id ``training``) in this process with the given settings."""
    import warnings

    from monai.bundle import ConfigWorkflow

    config = os.path.join(bundle_root, "configs", "discovery.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"{config} not found: the bundle has no self-discovery config")
    settings: Dict[str, Any] = {"bundle_root": bundle_root, "dataset_dir": dataset_dir, "patterns_dir": patterns_dir,
                                "cube_shape": [int(s) for s in cube_shape], "seed": int(seed)}
    if device is not None:
        settings["device"] = f"$torch.device('{device}')"
    extra = dict(overrides or {})
    if n_classes is not None and "n_classes" not in extra:
        # discovery makes at least the classes pretraining asks for
        settings["n_classes"] = f"$max({int(n_classes)}, @demo_caps#discovery_classes if @use_demo_caps else 200)"
    settings.update(extra)
    from genesis_monai.config_ids import check_override_ids
    from monai.bundle import ConfigParser

    check_override_ids(settings, ConfigParser.load_config_files(config), source=config)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="parsing config_file")
        workflow = ConfigWorkflow(config_file=config, meta_file=os.path.join(bundle_root, "configs", "metadata.json"),
                                  logging_file=False, workflow_type="train", run_id="training", **settings)
        workflow.initialize()
        workflow.run()
        workflow.finalize()


#: cube-extraction settings of the class coordinates on the demo data (its volumes are small: the
#: reference's 100/100/30 borders leave no room), the demo cube extraction's (``DEMO_EXTRACTION``)
DEMO_PATTERN_OPTIONS: Dict[str, Any] = {"border": (8, 8, 4), "lung_max": 0.5}


def discover_patterns(
    volumes: Mapping[str, Sequence[Mapping[str, str]]],
    save_dir: str,
    weights: Optional[str] = None,
    width: float = 1.0,
    n_classes: int = 200,
    n_instances: int = 200,
    n_instances_val: int = 30,
    crop: Sequence[int] = (64, 64, 32),
    feature_shape: Sequence[int] = (128, 128, 64),
    multi_res: bool = True,
    min_distance: float = 5.0,
    modality: str = "ct",
    seed: int = 0,
    device: Any = None,
    options: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Self-discovery steps 2-3 on ``volumes`` (:func:`discovery_volumes`) into ``save_dir``; the ``patterns`` id.

    ``weights`` is the feature network's checkpoint (the auto-encoder ``discovery.json`` trained, or a
    Models Genesis checkpoint); it must exist. ``options`` are further
    :func:`genesis_monai.data.discovery.discover` arguments (border, rule, lung_max, reference_repeat_quirk,
    ...). Returns the discovery summary (also logged).
    """
    from genesis_monai.data.discovery import discover, format_discovery_summary

    if not weights or not os.path.isfile(str(weights)):
        raise FileNotFoundError(f"feature weights {weights!r} not found: train the auto-encoder first (run id "
                                "'training' of configs/discovery.json) or pass --feature_weights PATH")
    summary = discover([v["image"] for v in volumes["training"]], save_dir, weights=str(weights), width=float(width),
                       n_classes=int(n_classes), n_instances=int(n_instances), n_instances_val=int(n_instances_val),
                       crop=[int(c) for c in crop], feature_shape=[int(s) for s in feature_shape],
                       multi_res=bool(multi_res), min_distance=float(min_distance), modality=str(modality),
                       validation_data=[v["image"] for v in volumes["validation"]], seed=int(seed),
                       device=str(device) if device is not None else "auto", **dict(options or {}))
    logger.warning("self-discovery finished:\n%s", format_discovery_summary(summary))
    return summary
