import argparse
import os
import stat
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
    state, report = import_checkpoint(str(path), target=GenesisClassifier(n_class=3), return_report=True)
    assert len(state) == 56 and all(k.startswith("base_model.down_tr") for k in state)
    assert any("dense_1" in k for k in report.dropped)
    # a classifier holds no decoder: it cannot initialise a whole UNet3D (strict layout)
    with pytest.raises(ValueError, match=r"44 required tensors unfilled .*up_tr256\.up_conv\.weight"):
        import_checkpoint(str(path))


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


# ---------------------------------------------------------------------------------------------
# widths, the encoder-only classifier, our own pretraining checkpoints
# ---------------------------------------------------------------------------------------------


def test_classifier_loads_a_full_unet3d_checkpoint(tmp_path, caplog):
    torch.manual_seed(2)
    src = UNet3D()
    path, saved = _published_layout_file(tmp_path, src)
    clf = GenesisClassifier(n_class=2)
    dense_before = clf.dense_1.weight.detach().clone()
    with caplog.at_level("WARNING"):
        load_pretrained_weights(clf, str(path), method="models_genesis")
    state, report = import_checkpoint(str(path), target=GenesisClassifier(n_class=2), return_report=True)
    assert len(report.matched) == 56 and not report.missing and not report.unexpected
    assert len(report.decoder_dropped) == 50 and all(k.startswith("module.up_tr") or k.startswith("module.out_tr")
                                                     for k in report.decoder_dropped)
    assert report.new_head == ["dense_1.weight", "dense_1.bias", "dense_2.weight", "dense_2.bias"]
    for k, v in saved.items():
        if k.startswith("down_tr"):
            torch.testing.assert_close(clf.state_dict()["base_model." + k], v)
    torch.testing.assert_close(clf.dense_1.weight, dense_before)  # the new head stays at initialisation
    assert "56 of 60 tensors matched" in caplog.text and "decoder tensors dropped as expected" in caplog.text


def test_width_one_checkpoint_is_refused_by_a_quarter_width_network(tmp_path):
    path, _ = _published_layout_file(tmp_path, UNet3D())
    net = UNet3D(width=0.25)
    with pytest.raises(ValueError) as info:
        load_pretrained_weights(net, str(path), method="models_genesis")
    msg = str(info.value)
    assert "Genesis_Chest_CT.pt" in msg and "(width 0.25)" in msg and "width-1 Genesis network" in msg
    assert "down_tr64.ops.0.conv1.weight has 32 output channels" in msg
    assert "down_tr64.ops.0.conv1.weight: checkpoint (32, 1, 3, 3, 3) vs network (8, 1, 3, 3, 3)" in msg
    assert "network_def#width" in msg and "from_scratch=true" in msg
    # and the other way round, through import_checkpoint
    small = tmp_path / "small.pt"
    torch.save({"state_dict": UNet3D(width=0.25).state_dict()}, small)
    with pytest.raises(ValueError, match=r"width-0\.25 Genesis network .* network has 32 \(width 1\)"):
        import_checkpoint(str(small), target=UNet3D())


class _Provenance:
    """A stand-in for the engines' provenance object: what CheckpointSaver stores is its state_dict()."""

    def __init__(self, record):
        self.record = record

    def state_dict(self):
        return dict(self.record)

    def load_state_dict(self, state):
        self.record = dict(state)


def _checkpoint_saver_file(tmp_path, net, network_class):
    """Write ``net`` exactly as the bundles' training does: MONAI CheckpointSaver, {"model", "provenance"}."""
    from ignite.engine import Engine
    from monai.handlers import CheckpointSaver

    engine = Engine(lambda e, b: None)
    prov = _Provenance({"method": "models_genesis", "network": {"class": network_class, "args": {"width": 0.25}}})
    CheckpointSaver(str(tmp_path), save_dict={"model": net, "provenance": prov}, save_final=True,
                    final_filename="pretrained.pt").attach(engine)
    engine.run([0], max_epochs=1)
    path = tmp_path / "pretrained.pt"
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model", "provenance"}  # the layout this test is about
    return path


def test_own_quarter_width_checkpoint_round_trip(tmp_path, caplog):
    torch.manual_seed(3)
    src = UNet3D(width=0.25)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    path = _checkpoint_saver_file(tmp_path, src, "genesis_monai.networks.unet3d.UNet3D")
    dst = UNet3D(width=0.25)
    with caplog.at_level("WARNING"):
        load_pretrained_weights(dst, str(path), method="models_genesis")
    assert "106 of 106 tensors matched" in caplog.text
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
    # the quarter-width encoder of a classifier loads from it too
    clf = load_pretrained_weights(GenesisClassifier(width=0.25), str(path))
    torch.testing.assert_close(clf.base_model.down_tr512.ops[1].conv1.weight, src.down_tr512.ops[1].conv1.weight)


# ---------------------------------------------------------------------------------------------
# any MONAI network, fine-tuned from its own restoration pretraining
# ---------------------------------------------------------------------------------------------

BASIC_UNET_CLASS = "monai.networks.nets.basic_unet.BasicUNet"


def _basic_unet(out_channels=1, features=(4, 4, 8, 16, 32, 4)):
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=3, in_channels=1, out_channels=out_channels, features=features)


def test_basic_unet_round_trip_through_load_pretrained_weights(tmp_path, caplog):
    torch.manual_seed(4)
    src = _basic_unet()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    path = _checkpoint_saver_file(tmp_path, src, BASIC_UNET_CLASS)
    n = len(src.state_dict())
    with caplog.at_level("WARNING"):
        dst = load_pretrained_weights(_basic_unet(), str(path), method="models_genesis")
    assert f"{n} of {n} tensors matched" in caplog.text and "pretrained.pt" in caplog.text
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
    # a DataParallel/DDP prefix in the checkpoint is stripped
    prefixed = tmp_path / "ddp.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, prefixed)
    assert len(import_checkpoint(str(prefixed), target=_basic_unet())) == n


def test_basic_unet_fine_tune_with_other_classes_reinitialises_only_the_output_layer(tmp_path, caplog):
    src = _basic_unet()
    path = _checkpoint_saver_file(tmp_path, src, BASIC_UNET_CLASS)
    dst = _basic_unet(out_channels=3)
    head = dst.final_conv.weight.detach().clone()
    with caplog.at_level("WARNING"):
        load_pretrained_weights(dst, str(path), method="models_genesis")
    n = len(src.state_dict())
    assert f"{n - 2} of {n} tensors matched" in caplog.text and "channel count 1 -> 3" in caplog.text
    torch.testing.assert_close(dst.final_conv.weight, head)
    torch.testing.assert_close(dst.conv_0.conv_0.conv.weight, src.conv_0.conv_0.conv.weight)


def test_checkpoint_of_another_network_is_an_error_naming_it(tmp_path):
    path = _checkpoint_saver_file(tmp_path, UNet3D(width=0.25), "genesis_monai.networks.unet3d.UNet3D")
    n = len(_basic_unet().state_dict())
    with pytest.raises(ValueError) as info:
        load_pretrained_weights(_basic_unet(), str(path), method="models_genesis")
    msg = str(info.value)
    assert "pretrained.pt" in msg and "does not fit network BasicUNet" in msg and f"0 of {n} tensors" in msg
    assert f"{n} tensors of the network are missing" in msg and "conv_0.conv_0.conv.weight" in msg
    assert "written by network class 'genesis_monai.networks.unet3d.UNet3D'" in msg
    assert "from_scratch=true" in msg
    # same class, other features: names fit, shapes do not (several channel counts change)
    other = tmp_path / "other"
    other.mkdir()
    path2 = _checkpoint_saver_file(other, _basic_unet(features=(8, 8, 16, 32, 64, 8)), BASIC_UNET_CLASS)
    with pytest.raises(ValueError, match=r"another shape, not one consistent channel change .*"
                                         r"conv_0\.conv_0\.conv\.weight: checkpoint \(8, 1, 3, 3, 3\) vs network "
                                         r"\(4, 1, 3, 3, 3\).*same class 'BasicUNet'"):
        load_pretrained_weights(_basic_unet(), str(path2))
    # and a BasicUNet checkpoint offered to the Genesis UNet3D names the encoder it lacks
    with pytest.raises(ValueError, match=r"down_tr64\.ops\.0\.conv1\.weight.*written by network class .*BasicUNet"):
        load_pretrained_weights(UNet3D(width=0.25), str(path2))


def test_generic_rule_missing_tensor_is_an_error(tmp_path):
    state = _basic_unet().state_dict()
    del state["upcat_1.convs.conv_1.conv.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 tensors of the network are missing .*upcat_1\.convs\.conv_1\.conv\.weight"):
        import_checkpoint(str(path), target=_basic_unet())


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_import_weights_refuses_to_overwrite_and_writes_umask_permissions(tmp_path):
    from genesis_monai.weights import import_weights_cli

    path, _ = _published_layout_file(tmp_path, UNet3D())
    dst = tmp_path / "pretrained.pt"
    dst.write_bytes(b"finished work")
    for choice in (False, "false"):  # fire hands the CLI's `--overwrite false` over as a string
        with pytest.raises(FileExistsError, match=r"pretrained\.pt already exists; pass --overwrite true"):
            import_weights_cli(str(path), str(dst), overwrite=choice)
    assert dst.read_bytes() == b"finished work"
    old = os.umask(0o027)
    try:
        import_weights_cli(str(path), str(dst), overwrite="true")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o640  # 0o666 minus the umask, not mkstemp's 0o600
    assert len(torch.load(dst, weights_only=True)["state_dict"]) == 106


def test_import_weights_destination_folder_is_a_clear_error(tmp_path):
    from genesis_monai.weights import import_weights_cli

    path, _ = _published_layout_file(tmp_path, UNet3D())
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"destination .*models is a folder; give the file to write, e\.g\. .*pretrained\.pt"):
        import_weights_cli(str(path), str(folder))


def test_text_file_is_not_a_checkpoint_and_gets_no_trusted_hint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("epoch 3: loss 0.12\n")
    with pytest.raises(ValueError) as info:
        import_checkpoint(str(text))
    msg = str(info.value)
    assert "notes.pt" in msg and "not a PyTorch checkpoint" in msg
    assert "trusted" not in msg and "weights_only" not in msg and "will likely succeed" not in msg
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a PyTorch checkpoint \(the file is empty\)"):
        import_checkpoint(str(empty))
    with pytest.raises(ValueError, match="is a folder"):
        import_checkpoint(str(tmp_path))


def test_pickle_refused_by_weights_only_suggests_trusted(tmp_path):
    # old training scripts saved their argparse.Namespace beside the weights
    path = tmp_path / "with_args.pt"
    torch.save({"args": argparse.Namespace(lr=1.0), "state_dict": UNet3D(width=0.25).state_dict()}, path)
    with pytest.raises(ValueError) as info:
        import_checkpoint(str(path), target=UNet3D(width=0.25))
    msg = str(info.value)
    assert "weights_only=True) refuses it" in msg and "argparse.Namespace" in msg and "--trusted true" in msg
    assert "will likely succeed" not in msg  # torch's own hint is not repeated
    assert len(import_checkpoint(str(path), target=UNet3D(width=0.25), trusted=True)) == 106
