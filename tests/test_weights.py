import subprocess
import sys

import pytest
import torch

from genesis_monai.networks import GenesisClassifier, UNet3D
from genesis_monai.weights import CHECKPOINT_LAYOUTS, CheckpointLayout, import_checkpoint, load_pretrained_weights, register_layout


def _published_layout_file(tmp_path, net, prefix="module.", extra=None):
    """A checkpoint as the reference training script writes it (DataParallel prefix, optimizer state)."""
    state = {prefix + k: v.clone() for k, v in net.state_dict().items()}
    state.update(extra or {})
    opt = torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9)
    net(torch.rand(2, 1, 16, 16, 8)).mean().backward()
    opt.step()
    path = tmp_path / "Genesis_Chest_CT.pt"
    torch.save({"epoch": 17, "state_dict": state, "optimizer_state_dict": opt.state_dict()}, path)
    return path, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_models_genesis_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(1)
    src = UNet3D()
    path, saved = _published_layout_file(tmp_path, src)
    state, report = import_checkpoint(str(path), return_report=True)
    assert len(report.matched) == 106 and not report.missing and not report.unexpected
    dst = UNet3D()
    dst.load_state_dict(state, strict=True)
    for k, v in saved.items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_flat_state_dict_without_prefix_and_without_bn_counters(tmp_path):
    src = UNet3D()
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "flat.pt"
    torch.save(state, path)
    out = import_checkpoint(str(path))
    UNet3D().load_state_dict(out, strict=False)
    assert len(out) == 106 - 14


def test_classifier_checkpoint_drops_dense_head(tmp_path):
    clf = GenesisClassifier()
    path = tmp_path / "clf.pt"
    torch.save({"model": clf.state_dict()}, path)
    state, report = import_checkpoint(str(path), return_report=True)
    assert len(state) == 106
    assert any("dense_1" in k for k in report.dropped)


def test_missing_encoder_tensor_is_an_error_naming_it(tmp_path):
    state = UNet3D().state_dict()
    del state["down_tr128.ops.0.conv1.weight"]
    path = tmp_path / "broken.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"down_tr128\.ops\.0\.conv1\.weight"):
        import_checkpoint(str(path))


def test_semantic_genesis_release_layout(tmp_path):
    net = UNet3D()
    state = {}
    for k, v in net.state_dict().items():
        # the releases keep encoder copies under a misspelt prefix, plus SSL heads fine-tuning ignores
        state[("module.classficationNet." + k) if k.startswith("down_tr") else ("module." + k)] = v
    state["module.projection_head.0.weight"] = torch.zeros(128, 512)
    state["module.prototypes.weight"] = torch.zeros(10, 128)
    state["module.clc_out.fc1.weight"] = torch.zeros(44, 1024)
    state["module.something_else"] = torch.zeros(3)
    path = tmp_path / "sg.pt"
    torch.save({"state_dict": state}, path)
    out, report = import_checkpoint(str(path), method="semantic_genesis", return_report=True)
    UNet3D().load_state_dict(out, strict=True)
    assert report.unexpected == ["module.something_else"]
    assert len(report.dropped) == 3
    assert "unused checkpoint keys (1)" in report.summary()


def test_shape_mismatch_reported_for_other_head(tmp_path):
    path, _ = _published_layout_file(tmp_path, UNet3D())
    target = UNet3D(n_class=3)
    with pytest.raises(ValueError, match="out_tr.final_conv.weight"):
        import_checkpoint(str(path), target=target)  # strict layout: the head must fit
    lenient = register_layout(CheckpointLayout(name="test_lenient", strict=False))
    try:
        out, report = import_checkpoint(str(path), method="test_lenient", target=target, return_report=True)
        assert ("out_tr.final_conv.weight", (1, 64, 1, 1, 1), (3, 64, 1, 1, 1)) in report.shape_mismatch
        assert "out_tr.final_conv.weight" not in out
    finally:
        CHECKPOINT_LAYOUTS.pop(lenient.name)


def test_unknown_method_and_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        import_checkpoint("x.pt", method="nope")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        import_checkpoint(str(tmp_path / "none.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read checkpoint .*bad.pt"):
        import_checkpoint(str(bad))
    torch.save({"epoch": 3, "note": "nothing"}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="no weights found"):
        import_checkpoint(str(tmp_path / "empty.pt"))


def test_load_pretrained_is_loud(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="from_scratch=true"):
        load_pretrained_weights(UNet3D(), str(tmp_path / "missing.pt"))
    net = load_pretrained_weights(UNet3D(), None, from_scratch=True)
    assert isinstance(net, UNet3D)
    path, saved = _published_layout_file(tmp_path, UNet3D())
    with caplog.at_level("WARNING"):
        dst = load_pretrained_weights(UNet3D(), str(path))
    assert "106 of 106 tensors matched" in caplog.text and "Genesis_Chest_CT.pt" in caplog.text
    torch.testing.assert_close(dst.down_tr64.ops[0].conv1.weight, saved["down_tr64.ops.0.conv1.weight"])


def test_import_weights_cli_writes_provenance(tmp_path):
    path, _ = _published_layout_file(tmp_path, UNet3D())
    dst = tmp_path / "models" / "pretrained.pt"
    res = subprocess.run(
        [sys.executable, "-m", "genesis_monai", "import-weights", str(path), str(dst), "--method", "models_genesis"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "matched 106 of 106" in res.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved["provenance"]["method"] == "models_genesis" and len(saved["provenance"]["source_sha256"]) == 64
    UNet3D().load_state_dict(saved["state_dict"], strict=True)
    # and the written file imports again
    assert len(import_checkpoint(str(dst))) == 106
