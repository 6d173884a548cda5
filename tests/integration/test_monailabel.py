"""MONAI Label drop-in: a bundle copied into the ``monaibundle`` app is served (/infer) and trainable (/train).

A real MONAI Label server runs on 127.0.0.1 from its own virtual environment (MONAI Label 0.8.5
upgrades torch and pins numpy, so it cannot share the project environment). Build it with
``bash scripts/setup_monailabel_venv.sh``; the test uses ``$GENESIS_MONAILABEL_VENV`` or
``.venv-monailabel`` in the repository root and is skipped when neither holds ``bin/monailabel``.

Run: ``python -m pytest -m integration tests/integration/test_monailabel.py``.
``$GENESIS_MONAILABEL_BUNDLE`` may name another bundle folder to drop in (default:
``bundles/models_genesis``). See docs/monailabel.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.environ.get("GENESIS_MONAILABEL_VENV") or os.path.join(REPO, ".venv-monailabel")
MONAILABEL = os.path.join(VENV, "bin", "monailabel")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
BUNDLE_SRC = os.environ.get("GENESIS_MONAILABEL_BUNDLE") or os.path.join(REPO, "bundles", "models_genesis")
MODEL = "models_genesis"  # name of the model folder in the app; the server calls the model by it

START_TIMEOUT_S = 300
INFER_TIMEOUT_S = 300
TRAIN_TIMEOUT_S = 900
SHAPE = (32, 32, 24)
SPACING = (1.5, 1.5, 2.0)
N_CASES = 4

if not os.path.isfile(MONAILABEL):
    pytest.skip(
        f"MONAI Label venv not found: {MONAILABEL} does not exist; build it with "
        "`bash scripts/setup_monailabel_venv.sh` or set GENESIS_MONAILABEL_VENV",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_studies(studies: str) -> None:
    """N_CASES CT-like volumes (HU) with a bright 'nodule' cube each; labels in labels/final (MONAI Label layout)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(studies, "labels", "final"), exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0, 10.0, 5.0)
    for i in range(N_CASES):
        img = rng.normal(-800, 30, size=SHAPE).astype(np.int16)
        lab = np.zeros(SHAPE, np.uint8)
        c = [int(rng.integers(4, s - 10)) for s in SHAPE]
        lab[c[0]:c[0] + 6, c[1]:c[1] + 6, c[2]:c[2] + 5] = 1
        img[lab > 0] = 40
        nib.save(nib.Nifti1Image(img, affine), os.path.join(studies, f"case_{i}.nii.gz"))
        if i < N_CASES - 1:  # the last case stays unlabelled, as in a real annotation session
            nib.save(nib.Nifti1Image(lab, affine), os.path.join(studies, "labels", "final", f"case_{i}.nii.gz"))


def _write_weights(models: str) -> None:
    """models/model.pt (flat state dict) and models/pretrained.pt (published Genesis layout) from a fresh net."""
    import torch

    from genesis_monai.bundles import bundle_network_def

    torch.manual_seed(0)
    state = bundle_network_def(os.path.dirname(models)).state_dict()
    os.makedirs(models, exist_ok=True)
    torch.save(state, os.path.join(models, "model.pt"))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 0},
               os.path.join(models, "pretrained.pt"))


def _sample_app() -> str:
    path = os.path.join(VENV, "monailabel", "sample-apps", "monaibundle")
    if not os.path.isfile(os.path.join(path, "main.py")):
        pytest.fail(f"MONAI Label's monaibundle sample app not found at {path}")
    return path


def _request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read(), dict(resp.headers)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("monailabel")
    app = str(work / "app")
    shutil.copytree(_sample_app(), app, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = os.path.join(app, "model", MODEL)
    shutil.copytree(BUNDLE_SRC, bundle, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts"))
    _write_weights(os.path.join(bundle, "models"))
    studies = str(work / "studies")
    _write_studies(studies)

    port = _free_port()
    log_path = str(work / "server.log")
    # same as `monailabel start_server ...`, with the venv's interpreter whatever the caller's PATH says
    cmd = [VENV_PYTHON, "-m", "monailabel.main", "start_server", "--app", app, "--studies", studies,
           "--conf", "models", MODEL, "--conf", "sam2", "false", "--conf", "zoo_source", "github",
           "-i", "127.0.0.1", "-p", str(port)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", VIRTUAL_ENV=VENV,
               PATH=os.path.join(VENV, "bin") + os.pathsep + os.environ.get("PATH", ""))
    env.pop("PYTHONPATH", None)  # the venv has its own editable genesis_monai
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=str(work), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def log_tail(n: int = 60) -> str:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        info = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"MONAI Label server exited with {proc.returncode} during start-up:\n{log_tail()}")
            try:
                _, body, _ = _request(base + "/info/", timeout=10)
                info = json.loads(body)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(2)
        if info is None:
            pytest.fail(f"MONAI Label server not answering on {base} after {START_TIMEOUT_S} s:\n{log_tail()}")
        yield {"base": base, "info": info, "bundle": bundle, "studies": studies, "log_tail": log_tail}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()


def test_info_lists_the_bundle_for_inference_and_training(server):
    info = server["info"]
    assert MODEL in info["models"], f"models served: {list(info['models'])}\n{server['log_tail']()}"
    model = info["models"][MODEL]
    assert model["labels"] == {"nodule": 1}, model  # from metadata outputs.pred.channel_def, background skipped
    assert model["dimension"] == 3
    assert MODEL in info.get("trainers", {}), (
        f"no trainer for {MODEL}: MONAI Label needs configs/train.json with ids train#trainer#max_epochs, "
        f"train#dataset#data, train#handlers, validate#dataset#data\n{server['log_tail']()}")


def test_infer_returns_a_mask_with_the_input_geometry(server, tmp_path):
    import nibabel as nib

    query = urllib.parse.urlencode({"image": "case_3", "output": "image"})
    data = urllib.parse.urlencode({"params": json.dumps({"device": "cpu"})}).encode()
    try:
        status, body, _ = _request(f"{server['base']}/infer/{MODEL}?{query}", data=data,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"},
                                   timeout=INFER_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        pytest.fail(f"/infer failed with {err.code}: {err.read()[:2000]!r}\n{server['log_tail']()}")
    assert status == 200
    out = tmp_path / ("pred.nii.gz" if body[:2] == b"\x1f\x8b" else "pred.nii")
    out.write_bytes(body)
    pred = nib.load(str(out))
    image = nib.load(os.path.join(server["studies"], "case_3.nii.gz"))
    assert pred.shape[:3] == image.shape, (pred.shape, image.shape)
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-3)
    values = set(np.unique(np.asarray(pred.dataobj)).tolist())
    assert values <= {0, 1}, values


def test_train_rewrites_the_model(server):
    model_pt = os.path.join(server["bundle"], "models", "model.pt")
    before = _sha256(model_pt)
    body = json.dumps({"max_epochs": 1, "val_split": 0.5, "multi_gpu": False, "device": "cpu"}).encode()
    try:
        status, resp, _ = _request(f"{server['base']}/train/{MODEL}?run_sync=true", data=body,
                                   headers={"Content-Type": "application/json"}, timeout=TRAIN_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        pytest.fail(f"/train failed with {err.code}: {err.read()[:2000]!r}\n{server['log_tail']()}")
    assert status == 200, resp[:2000]
    assert os.path.isfile(model_pt)
    assert _sha256(model_pt) != before, (
        "models/model.pt was not rewritten by a 1-epoch MONAI Label training run: the bundle's CheckpointSaver "
        "runs only after validation, so configs/train.json must validate within max_epochs (val_interval <= "
        f"train#trainer#max_epochs); see docs/monailabel.md\n{server['log_tail'](80)}")
    import torch

    from genesis_monai.bundles import bundle_network_def

    state = torch.load(model_pt, map_location="cpu", weights_only=True)
    bundle_network_def(server["bundle"]).load_state_dict(state.get("model", state), strict=True)
