"""ExtractionOptions: one declaration of every cube-extraction option, validated once, used everywhere."""

import dataclasses
import inspect
import json
import os
import subprocess
import sys

import pytest

from genesis_monai.data.extraction_options import ExtractionOptions, as_extraction_options
from genesis_monai.data.intensity import INTENSITY_PRESETS, intensity_window, preset_name

# extraction_settings.json as genesis_monai wrote it before ExtractionOptions (defaults, dealt layout):
# a folder of cubes made then must still count as "same settings" (resumable without --overwrite)
EARLIER_DEFAULT_SETTINGS = {
    "scale": 32, "modality": "ct", "seed": 0, "spacing": None, "fold_pattern": "subset{fold}", "layout": "dealt",
    "splits": {"training": [0, 1, 2, 3, 4], "validation": [5, 6], "test": [7, 8, 9]},
    "extract": {"border": [100, 100, 30], "crop": [64, 64, 32], "hu_window": [-1000, 1000], "len_depth": 3,
                "lung_max": 0.15, "mri_normalization": "fixed", "mri_window": [0, 4000], "rule": "auto",
                "tissue_min": 0.5, "tissue_threshold": None, "tissue_threshold_hu": -150, "tries_factor": 50,
                "window": None},
}


def test_defaults_are_the_reference_recipe_and_settings_match_earlier_files():
    opts = ExtractionOptions()
    assert (opts.scale, opts.crop, opts.border, opts.lung_max, opts.len_depth) == (32, (64, 64, 32), (100, 100, 30),
                                                                                    0.15, 3)
    assert opts.hu_window == INTENSITY_PRESETS["ct"] and opts.mri_window == INTENSITY_PRESETS["mri_fixed"]
    settings = opts.settings("dealt")
    assert settings == EARLIER_DEFAULT_SETTINGS
    assert json.dumps(settings, indent=2) == json.dumps(EARLIER_DEFAULT_SETTINGS, indent=2)  # same bytes on disk


def test_values_are_normalised_once():
    opts = ExtractionOptions.from_mapping({"crop": "32x32x16", "border": [8, 8, 4.0]}, hu_window="-500,500",
                                          spacing=(1, 1, 2), modality="MRI", splits={"training": [0], "validation": [1]})
    assert opts.crop == (32, 32, 16) and opts.border == (8, 8, 4) and opts.hu_window == (-500.0, 500.0)
    assert opts.spacing == (1.0, 1.0, 2.0) and opts.modality == "mri" and opts.splits == {"training": (0,),
                                                                                         "validation": (1,)}
    assert opts.preset == "mri_fixed" and opts.effective_rule == "tissue"
    assert opts.replace(mri_normalization="minmax").preset == "mri_minmax"
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.scale = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad, match", [
    ({"lungmax": 0.2}, r"unknown cube extraction option\(s\) \['lungmax'\]; known: .*'lung_max'"),
    ({"crop": (64, 64)}, "crop must be 3"),
    ({"crop": (64, 64, 31.5)}, "crop must be 3 integers"),
    ({"border": (-1, 0, 0)}, "border must be 3 integers >= 0"),
    ({"scale": 0}, "scale must be an integer >= 1"),
    ({"scale": True}, "scale must be an integer"),
    ({"modality": "pet"}, "unknown modality 'pet'"),
    ({"rule": "lungs"}, "unknown rule 'lungs'"),
    ({"method": "fast"}, "unknown method 'fast'"),
    ({"hu_window": (1000, -1000)}, "hu_window must be .* high > low"),
    ({"window": "abc"}, "window must be 2 numbers"),
    ({"spacing": (1, 0, 1)}, "spacing must be 3 positive"),
    ({"fold_pattern": "subset"}, "fold_pattern must contain"),
    ({"splits": {}}, "splits must map"),
    ({"lung_max": "x"}, "lung_max must be a number"),
    ({"mri_normalization": "zscore"}, "unknown mri_normalization"),
])
def test_bad_options_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        ExtractionOptions.from_mapping(bad)


def test_as_extraction_options_accepts_none_mapping_or_object():
    base = ExtractionOptions(scale=4)
    assert as_extraction_options() == ExtractionOptions()
    assert as_extraction_options({"scale": 4}) == base
    assert as_extraction_options(base) is base
    assert as_extraction_options(base, lung_max=0.5) == ExtractionOptions(scale=4, lung_max=0.5)


def test_intensity_presets_are_one_table():
    import numpy as np

    vol = np.array([[[-2000.0, 0.0, 5000.0]]])
    assert preset_name("mri") == "mri_fixed" and preset_name("mri", "minmax") == "mri_minmax"
    assert intensity_window(vol, "ct") == INTENSITY_PRESETS["ct"]
    assert intensity_window(vol, "mri_fixed") == INTENSITY_PRESETS["mri_fixed"]
    assert intensity_window(vol, "mri_minmax") == (-2000.0, 5000.0)
    from genesis_monai.data.intensity import intensity_transform

    t = intensity_transform("ct")
    out = t({"image": vol.astype(np.float32)})["image"]
    np.testing.assert_allclose(np.asarray(out).ravel(), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="unknown intensity preset"):
        intensity_transform("pet")


def test_command_line_flags_are_the_option_fields():
    from genesis_monai.data.extract import extract_cubes_cli  # still importable from its earlier home

    params = inspect.signature(extract_cubes_cli).parameters
    assert list(params)[:2] == ["data", "save"]
    assert set(ExtractionOptions.names()) <= set(params)
    assert {"overwrite", "folds", "num_workers", "quiet"} <= set(params)
    assert params["border"].default == (100, 100, 30)
    for name in ExtractionOptions.names():
        assert f"    {name}: " in extract_cubes_cli.__doc__
    run = subprocess.run([sys.executable, "-m", "genesis_monai", "extract-cubes", "--help"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PAGER": "cat"})
    shown = run.stdout + run.stderr  # fire prints help to stderr when it is not a terminal
    assert run.returncode == 0
    assert "--tissue_threshold_hu" in shown and "--mri_normalization" in shown and "--overwrite" in shown
