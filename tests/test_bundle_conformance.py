"""MONAI ecosystem conformance of every bundle in bundles/ (issue #5).

The checks mirror what the MONAI model zoo's CI (ci/verify_bundle.py) and MONAI Label rely on:
required files, version/changelog, metadata against the bundle schema (an offline copy in
tests/data), ``verify_net_in_out``, a TorchScript ``ckpt_export`` whose output matches the eager
network, and the ``ConfigWorkflow`` property checks for the train and infer workflows.

Every check is parametrised over the bundle folders, so a new bundle is covered on arrival.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil

import pytest
import torch

from bundle_utils import BUNDLES_DIR, copy_bundle, write_tiny_pretraining_data, write_tiny_segmentation_set

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "meta_schema_20240725.json")
BUNDLES = sorted(
    d for d in os.listdir(BUNDLES_DIR) if os.path.isdir(os.path.join(BUNDLES_DIR, d)) and not d.startswith((".", "_"))
)
# MONAI Label and the zoo look these names up literally; an overlay must accompany each base config.
MULTI_GPU_OVERLAYS = {"train.json": "multi_gpu_train.json", "training.json": "multi_gpu_training.json"}


def _cfg(bundle: str, name: str) -> str:
    return os.path.join(BUNDLES_DIR, bundle, "configs", name)


def _meta(bundle: str) -> dict:
    with open(_cfg(bundle, "metadata.json")) as f:
        return json.load(f)


def _network_def(bundle: str, config: str = "inference.json", **overrides) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(_cfg(bundle, config))
    for k, v in overrides.items():
        parser[k] = v
    return parser.get_parsed_content("network_def", instantiate=True)


def _concrete_shape(spatial_shape, n: int) -> list:
    """``["8*n", 16, "*"]`` -> ints, the way verify_net_in_out reads them (here p = n = any = ``n``)."""
    env = {"__builtins__": {}}
    return [s if isinstance(s, int) else n if s == "*" else int(eval(s, env, {"n": n, "p": n, "any": n}))
            for s in spatial_shape]


def test_bundles_found():
    assert "models_genesis" in BUNDLES, f"bundles found in {BUNDLES_DIR}: {BUNDLES}"


# --------------------------------------------------------------------------------------------
# files, versions, metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_files(bundle):
    root = os.path.join(BUNDLES_DIR, bundle)
    required = ["LICENSE", "configs/metadata.json", "configs/inference.json", "configs/logging.conf",
                "docs/README.md", "large_files.yml"]
    missing = [f for f in required if not os.path.isfile(os.path.join(root, f))]
    assert not missing, f"bundle {bundle} lacks {missing}"
    for base, overlay in MULTI_GPU_OVERLAYS.items():
        if os.path.isfile(_cfg(bundle, base)):
            assert os.path.isfile(_cfg(bundle, overlay)), f"bundle {bundle} has configs/{base} but no configs/{overlay}"
    with open(os.path.join(root, "large_files.yml")) as f:
        text = f.read()
    try:
        import yaml  # PyYAML: what `monai.bundle download_large_files` reads the file with
    except ImportError:  # not a project requirement: fall back to the line format
        paths = re.findall(r"^\s*-?\s*path:\s*[\"']?([^\"'\s]+)", text, flags=re.M)
    else:
        large = yaml.safe_load(text)
        entries = large.get("large_files") if isinstance(large, dict) else None
        assert isinstance(entries, list) and entries, "large_files.yml must hold a non-empty `large_files` list"
        paths = [str(e.get("path", "")) for e in entries]
    assert paths, "large_files.yml lists no `path`"
    assert all(p.startswith("models/") for p in paths), f"large_files.yml paths outside models/: {paths}"
    # every JSON config must at least parse
    for name in os.listdir(os.path.join(root, "configs")):
        if name.endswith(".json"):
            with open(_cfg(bundle, name)) as f:
                json.load(f)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_version_is_in_changelog(bundle):
    meta = _meta(bundle)
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"]), f"version {meta['version']!r} is not semver"
    assert meta["version"] in meta["changelog"], f"version {meta['version']} missing from the changelog"
    assert list(meta["changelog"])[0] == meta["version"], "the changelog lists the newest version first"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_matches_schema(bundle, tmp_path):
    from monai.bundle import verify_metadata

    # verify_metadata "downloads" the schema to filepath; an existing file is used as it is (offline)
    schema = str(tmp_path / "schema.json")
    shutil.copy(SCHEMA, schema)
    verify_metadata(meta_file=_cfg(bundle, "metadata.json"), filepath=schema)
    meta = _meta(bundle)
    assert "optional_packages_version" not in meta, (
        "MONAI 1.6 overwrites required_packages_version with the deprecated optional_packages_version: use only "
        "required_packages_version")
    pins = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"],
            **meta["required_packages_version"]}
    bad = {k: v for k, v in pins.items() if not re.fullmatch(r"\d+(\.\d+)*", v)}
    assert not bad, f"zoo CI pip-installs pkg==version; these are not plain versions: {bad}"
    fmt = meta["network_data_format"]
    assert "image" in fmt["inputs"] and "pred" in fmt["outputs"], "verify_net_in_out needs inputs.image and outputs.pred"


@pytest.mark.parametrize("broken", ["network_data_format", "version", "inputs-type"])
def test_schema_rejects_broken_metadata(broken, tmp_path):
    from monai.bundle import verify_metadata

    meta = copy.deepcopy(_meta("models_genesis"))
    if broken == "inputs-type":
        meta["network_data_format"]["inputs"]["image"]["type"] = "volume"
    else:
        del meta[broken]
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    schema = str(tmp_path / "schema.json")
    shutil.copy(SCHEMA, schema)
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(meta_file), filepath=schema)


# --------------------------------------------------------------------------------------------
# network shape and TorchScript export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle):
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=_cfg(bundle, "metadata.json"),
                      config_file=_cfg(bundle, "inference.json"), device="cpu", n=1, p=1, any=1)


def test_verify_net_in_out_catches_wrong_channel_count(tmp_path):
    from monai.bundle import verify_net_in_out

    meta = _meta("models_genesis")
    meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 3
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="channel"):
        verify_net_in_out(net_id="network_def", meta_file=str(meta_file),
                          config_file=_cfg("models_genesis", "inference.json"), device="cpu", n=1, p=1, any=1)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_matches_eager(bundle, tmp_path):
    from monai.bundle import ckpt_export, load

    torch.manual_seed(0)
    net = _network_def(bundle)
    ckpt = str(tmp_path / "model.pt")
    torch.save(net.state_dict(), ckpt)
    ts_file = str(tmp_path / "model.ts")
    ckpt_export(net_id="network_def", filepath=ts_file, ckpt_file=ckpt, meta_file=_cfg(bundle, "metadata.json"),
                config_file=_cfg(bundle, "inference.json"))
    assert os.path.isfile(ts_file)
    ts_net = torch.jit.load(ts_file, map_location="cpu")
    spec = _meta(bundle)["network_data_format"]["inputs"]["image"]
    x = torch.rand(1, spec["num_channels"], *_concrete_shape(spec["spatial_shape"], n=2))
    net.eval()
    with torch.no_grad():
        expected, got = net(x), ts_net(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the metadata travels inside the TorchScript file (MONAI's extra files)
    _, meta, _ = load(name=bundle, model_file=ts_file, load_ts_module=True, bundle_dir=str(tmp_path))
    assert meta["version"] == _meta(bundle)["version"]


# --------------------------------------------------------------------------------------------
# ConfigWorkflow properties (what the zoo tests, MONAI FL and MONAI Label rely on)
# --------------------------------------------------------------------------------------------


def _required_property_ids(workflow_type: str) -> list:
    from monai.bundle.properties import InferProperties, MetaProperties, TrainProperties
    from monai.utils import BundleProperty, BundlePropertyConfig

    props = {**(TrainProperties if workflow_type == "train" else InferProperties), **MetaProperties}
    return [p[BundlePropertyConfig.ID] for p in props.values() if p.get(BundleProperty.REQUIRED)]


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("configs,workflow_type", [
    pytest.param(["train.json"], "train", id="train"),
    pytest.param(["training.json"], "train", id="training"),
    pytest.param(["train.json", "evaluate.json"], "train", id="train+evaluate"),
    pytest.param(["train.json", "multi_gpu_train.json"], "train", id="train+multi_gpu_train"),
    pytest.param(["training.json", "multi_gpu_training.json"], "train", id="training+multi_gpu_training"),
    pytest.param(["inference.json"], "infer", id="inference"),
])
def test_required_property_ids_present(bundle, configs, workflow_type):
    """Static check (nothing instantiated): the ids ConfigWorkflow requires exist in the merged config."""
    from monai.bundle import ConfigWorkflow

    files = [_cfg(bundle, c) for c in configs]
    if not all(os.path.isfile(f) for f in files):
        pytest.skip(f"{bundle} has no {configs}")
    wf = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], meta_file=_cfg(bundle, "metadata.json"),
                        logging_file=False, workflow_type=workflow_type)
    missing = [i for i in _required_property_ids(workflow_type) if i not in wf.parser]
    assert not missing, f"{bundle} {configs}: missing required ids {missing}"
    if workflow_type == "train" and "train#handlers" in wf.parser:
        # check_properties() reads item["_target_"] of every train#handlers entry (MONAI 1.6.1
        # ConfigWorkflow._check_optional_id): a bare "@ref" entry there crashes it with a TypeError
        refs = [h for h in wf.parser["train#handlers"] if not isinstance(h, dict)]
        assert not refs, (f"{bundle} {configs}: train#handlers entries must be dicts with _target_, found {refs}; "
                          "attach such objects in the run list instead (e.g. \"$@provenance.attach(@train#trainer)\")")


def _published_layout(state: dict) -> dict:
    """The layout of the published Genesis checkpoints: ``{"state_dict": {"module." + key: tensor}}``."""
    return {"state_dict": {"module." + k: v for k, v in state.items()}}


@pytest.fixture(scope="module")
def tiny_bundles(tmp_path_factory):
    """Each bundle copied to a temp folder with models/model.pt, models/pretrained.pt and tiny data."""
    root = tmp_path_factory.mktemp("conformance")
    data = write_tiny_segmentation_set(str(root / "data"), n=4, shape=(16, 16, 16))
    out = {}
    for bundle in BUNDLES:
        dst = root / bundle
        copy_bundle(bundle, dst)
        torch.manual_seed(0)
        # the runs below use tiny non-demo data: the published recipe (demo caps off), as the configs resolve it
        state = _network_def(bundle, use_demo_caps=False).state_dict()
        torch.save(state, dst / "models" / "model.pt")
        torch.save(_published_layout(state), dst / "models" / "pretrained.pt")
        out[bundle] = {"root": str(dst), "data": data}
    return out


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config,workflow_type", [("train.json", "train"), ("inference.json", "infer")])
def test_check_properties_empty(bundle, config, workflow_type, tiny_bundles):
    """``ConfigWorkflow.check_properties()`` instantiates every required property: run it on tiny data."""
    from monai.bundle import ConfigWorkflow

    b = tiny_bundles[bundle]
    cfg = os.path.join(b["root"], "configs", config)
    if not os.path.isfile(cfg):
        pytest.skip(f"{bundle} has no configs/{config}")
    wf = ConfigWorkflow(config_file=cfg, meta_file=os.path.join(b["root"], "configs", "metadata.json"),
                        logging_file=False, workflow_type=workflow_type, bundle_root=b["root"],
                        dataset_dir=b["data"], device="$torch.device('cpu')", num_workers=0)
    wf.initialize()
    try:
        assert wf.check_properties() == []
    finally:
        wf.finalize()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_check_properties_empty_pretraining(bundle, tiny_bundles, tmp_path):
    """The self-supervised ``training.json`` as a train workflow, on tiny data in the layout it reads (cubes or patterns)."""
    import importlib

    from monai.bundle import ConfigWorkflow

    b = tiny_bundles[bundle]
    cfg = os.path.join(b["root"], "configs", "training.json")
    if not os.path.isfile(cfg):
        pytest.skip(f"{bundle} has no configs/training.json")
    try:
        importlib.import_module("genesis_monai.data.cube_dataset")
        importlib.import_module("genesis_monai.data.demo")
        ready = hasattr(importlib.import_module("genesis_monai.transforms"), "GenesisDegrade")
    except ImportError:
        ready = False
    if not ready:
        pytest.skip("training.json needs genesis_monai.transforms.GenesisDegrade, genesis_monai.data.cube_dataset "
                    "and genesis_monai.data.demo (other work packages)")
    data = write_tiny_pretraining_data(bundle, str(tmp_path / "data"), shape=(16, 16, 8), n=2)
    wf = ConfigWorkflow(config_file=cfg, meta_file=os.path.join(b["root"], "configs", "metadata.json"),
                        logging_file=False, workflow_type="train", bundle_root=b["root"],
                        ckpt_dir=str(tmp_path / "models"),  # the bundle's models/pretrained.pt is not this run's
                        device="$torch.device('cpu')", num_workers=0, **data)
    wf.initialize()
    try:
        assert wf.check_properties() == []
    finally:
        wf.finalize()
