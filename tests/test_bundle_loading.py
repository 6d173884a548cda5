"""genesis_monai.load_bundle and the MONAI-native monai.bundle.load, offline, on copies of every bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import genesis_monai
from bundle_utils import BUNDLES_DIR, copy_bundle
from genesis_monai.bundles import bundle_network_def, load_bundle

BUNDLES = sorted(
    d for d in os.listdir(BUNDLES_DIR)
    if os.path.isfile(os.path.join(BUNDLES_DIR, d, "configs", "metadata.json"))
)


def _x(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, 16, 16, 16, generator=g)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """Copies of the bundles with models/model.pt (flat) and models/pretrained.pt (published layout)."""
    root = tmp_path_factory.mktemp("bundles")
    states = {}
    for name in BUNDLES:
        dst = root / name
        copy_bundle(name, dst)
        torch.manual_seed(0)
        finetuned = bundle_network_def(dst).state_dict()
        torch.manual_seed(1)
        pretrained = bundle_network_def(dst).state_dict()
        torch.save(finetuned, dst / "models" / "model.pt")
        torch.save({"state_dict": {"module." + k: v for k, v in pretrained.items()}, "epoch": 3},
                   dst / "models" / "pretrained.pt")
        states[name] = {"finetuned": finetuned, "pretrained": pretrained}
    return {"root": str(root), "states": states}


def test_import_genesis_monai_stays_light():
    code = ("import sys, genesis_monai; "
            "assert 'monai.bundle' not in sys.modules, 'monai.bundle imported eagerly'; "
            "assert 'genesis_monai.bundles' not in sys.modules; "
            "f = genesis_monai.load_bundle; assert f.__module__ == 'genesis_monai.bundles'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    assert genesis_monai.load_bundle is load_bundle
    with pytest.raises(AttributeError):
        genesis_monai.no_such_thing  # noqa: B018


@pytest.mark.parametrize("name", BUNDLES)
def test_finetuned_matches_checkpoint_and_monai_bundle_load(name, bundle_dir):
    from monai.bundle import load

    net = load_bundle(name, weights="finetuned", bundle_dir=bundle_dir["root"])
    assert not net.training
    for k, v in bundle_dir["states"][name]["finetuned"].items():
        torch.testing.assert_close(net.state_dict()[k], v)
    # the MONAI-native call documented in docs/python_api.md builds the same network with the same weights
    native = load(name, bundle_dir=bundle_dir["root"], workflow_type="inference", device="cpu")
    assert isinstance(native, torch.nn.Module)
    native.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(_x()), native(_x()))


@pytest.mark.parametrize("name", BUNDLES)
def test_pretrained_goes_through_the_importer(name, bundle_dir):
    from genesis_monai.bundles import bundle_parser

    net = load_bundle(name, weights="pretrained", bundle_dir=bundle_dir["root"])
    expected = bundle_dir["states"][name]["pretrained"]
    parser = bundle_parser(os.path.join(bundle_dir["root"], name), "train.json")
    if "pretrained_parts" in parser:  # fine-tuning takes only these sub-networks from the pretrained file
        parts = tuple(parser.get_parsed_content("pretrained_parts"))
        expected = {k: v for k, v in expected.items() if k.startswith(parts)}
        assert expected, f"{name}: pretrained_parts {parts} name no tensor of the network"
    got = net.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v)
    other = bundle_dir["states"][name]["finetuned"]
    assert any(not torch.equal(got[k], other[k]) for k in other if other[k].is_floating_point())


@pytest.mark.parametrize("name", BUNDLES)
def test_none_needs_no_weight_file_and_uses_default_bundle_dir(name):
    net = load_bundle(name, weights="none")
    assert isinstance(net, torch.nn.Module) and not net.training
    with torch.no_grad():
        assert net(_x()).shape[0] == 1


def test_nested_model_key_and_module_prefix_load(tmp_path, bundle_dir):
    name = BUNDLES[0]
    dst = tmp_path / name
    shutil.copytree(os.path.join(bundle_dir["root"], name), dst)
    state = bundle_dir["states"][name]["finetuned"]
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, dst / "models" / "model.pt")
    net = load_bundle(name, weights="finetuned", bundle_dir=str(tmp_path))
    k = next(iter(state))
    torch.testing.assert_close(net.state_dict()[k], state[k])


def test_missing_weight_files_say_how_to_make_them(tmp_path):
    name = "models_genesis"
    shutil.copytree(os.path.join(BUNDLES_DIR, name), tmp_path / name, ignore=shutil.ignore_patterns("*.pt"))
    with pytest.raises(FileNotFoundError) as err:
        load_bundle(name, weights="finetuned", bundle_dir=str(tmp_path))
    msg = str(err.value)
    assert os.path.join("models", "model.pt") in msg and "configs/train.json" in msg
    with pytest.raises(FileNotFoundError) as err:
        load_bundle(name, weights="pretrained", bundle_dir=str(tmp_path))
    msg = str(err.value)
    assert os.path.join("models", "pretrained.pt") in msg and "configs/training.json" in msg and "import-weights" in msg


def test_bad_arguments(tmp_path, bundle_dir):
    with pytest.raises(ValueError, match="weights must be one of"):
        load_bundle("models_genesis", weights="best")
    with pytest.raises(FileNotFoundError, match="no bundle 'absent'"):
        load_bundle("absent", weights="none", bundle_dir=str(tmp_path))
    name = BUNDLES[0]
    dst = tmp_path / name
    shutil.copytree(os.path.join(bundle_dir["root"], name), dst)
    torch.save({"unrelated.weight": torch.zeros(3)}, dst / "models" / "model.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_bundle(name, weights="finetuned", bundle_dir=str(tmp_path))
