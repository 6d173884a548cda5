"""Errors that say their reason (issue 10, rows 4 and 6), for every bundle config, through MONAI's own CLI:
misspelt override ids are refused with the nearest id, and a failing run's last lines are the project's message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bundle_utils import BUNDLES_DIR, copy_bundle
from genesis_monai.config_ids import UnknownConfigIdError, check_override_ids, cli_overrides, unknown_override_ids
from genesis_monai.error_summary import summary_line

BUNDLES = sorted(d for d in os.listdir(BUNDLES_DIR) if os.path.isfile(os.path.join(BUNDLES_DIR, d, "configs",
                                                                                     "metadata.json")))
#: (config, run id) of every command a bundle offers, and an id each of them defines
COMMANDS = [("training.json", "training"), ("train.json", "run"), ("inference.json", "run")]


def _bundle_run(bundle_root: str, config: str, run_id: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", f"configs/{config}",
         "--meta_file", "configs/metadata.json", "--device", "$torch.device('cpu')", *args],
        cwd=bundle_root, capture_output=True, text=True, timeout=300)


def _tail(proc: subprocess.CompletedProcess, n: int = 8) -> str:
    return "\n".join(proc.stderr.strip().splitlines()[-n:])


@pytest.fixture(scope="module")
def bundle_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {b: copy_bundle(b, root / b) for b in BUNDLES}


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config,run_id", COMMANDS)
def test_misspelt_override_is_refused_with_the_nearest_id(bundle, config, run_id, bundle_copies):
    if not os.path.isfile(os.path.join(BUNDLES_DIR, bundle, "configs", config)):
        pytest.skip(f"{bundle} has no configs/{config}")
    proc = _bundle_run(bundle_copies[bundle], config, run_id, "--dataset_dirr", "/tmp/x")
    assert proc.returncode != 0
    tail = _tail(proc)
    assert "The run failed" in tail and "'dataset_dirr'" in tail and "did you mean 'dataset_dir'" in tail, tail
    assert not os.path.exists(os.path.join(bundle_copies[bundle], "eval")), "refused before anything was written"


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config,run_id", COMMANDS)
def test_missing_dataset_dir_is_the_last_thing_printed(bundle, config, run_id, bundle_copies, tmp_path):
    if not os.path.isfile(os.path.join(BUNDLES_DIR, bundle, "configs", config)):
        pytest.skip(f"{bundle} has no configs/{config}")
    missing = str(tmp_path / "no_such_folder")
    proc = _bundle_run(bundle_copies[bundle], config, run_id, "--dataset_dir", missing, "--ckpt_dir",
                       str(tmp_path / "models"))
    assert proc.returncode != 0
    tail = _tail(proc, 20)
    assert "The run failed. Reason (genesis_monai)" in tail and missing in tail, tail
    assert tail.rindex("Failed to evaluate ConfigExpression") < tail.index("The run failed"), "the reason comes last"


def test_override_rules():
    config = {"learning_rate": 1.0, "network_def": {"_target_": "X", "width": 1.0},
              "train": {"handlers": [{"_target_": "A"}]}}
    errors, warnings_ = unknown_override_ids(
        ["learning_rate", "network_def#width", "train#handlers#0#_target_", "lerning_rate", "network_def#dropout",
         "netwrk_def#width", "train#handlers#3#x", "train::handlers"], config)
    assert errors == ["'lerning_rate' (did you mean 'learning_rate'?)", "'netwrk_def#width' (did you mean "
                      "'network_def#width'?)", "'train#handlers#3#x' (did you mean 'train#handlers#0'?)"]
    assert warnings_ == ["'network_def#dropout' adds a new key to 'network_def' (did you mean 'network_def#width'?)"]
    with pytest.raises(UnknownConfigIdError, match="'zzz'") as info:
        check_override_ids(["zzz"], config)
    assert not str(info.value).startswith('"'), "the message prints as text, not as a quoted repr"


def test_cli_overrides_reads_fire_syntax(tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"seed": 3, "run_id": "training"}))
    config_file, overrides = cli_overrides([
        "run", "training", "--config_file", "['a.json','b.json']", "--meta_file", "m.json", "--lr=0.1",
        "--resume", "--network_def#width", "0.5", "--args_file", str(args)])
    assert config_file == ["a.json", "b.json"]
    assert overrides == {"lr": 0.1, "resume": True, "network_def#width": 0.5, "seed": 3}


def test_summary_names_the_innermost_project_error():
    from genesis_monai.data.pretraining import resolve_pretraining_data

    try:
        try:
            resolve_pretraining_data("/no/such/dir", cube_shape=[16, 16, 8])
        except FileNotFoundError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from inner
    except RuntimeError as outer:
        line = summary_line(outer)
    assert line.startswith("genesis_monai: FileNotFoundError:") and "/no/such/dir" in line
    assert summary_line(ValueError("alone")) is None  # a one-error traceback already ends with its reason
