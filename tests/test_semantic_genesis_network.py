"""The Semantic Genesis / TransVW network (UNet3D + clc_out head) and the importer that keeps its head."""

from __future__ import annotations

import pytest
import torch

from genesis_monai.networks import SemanticGenesisClassifier, SemanticGenesisNet, UNet3D
from genesis_monai.weights import head_classes, import_checkpoint, import_weights_cli, load_pretrained_weights

#: research/upstream_genesis.md §1.4: the 9 head entries at width 1.0 with C = 44
HEAD_SHAPES = {
    "clc_out.conv1.weight": (1024, 512, 3, 3, 3), "clc_out.conv1.bias": (1024,), "clc_out.bn1.weight": (1024,),
    "clc_out.bn1.bias": (1024,), "clc_out.bn1.running_mean": (1024,), "clc_out.bn1.running_var": (1024,),
    "clc_out.bn1.num_batches_tracked": (), "clc_out.fc1.weight": (44, 1024), "clc_out.fc1.bias": (44,),
}


def test_reference_key_names_counts_and_shapes():
    net = SemanticGenesisNet(cls_classes=44)
    state = net.state_dict()
    unet = UNet3D().state_dict()
    assert len(state) == 115 and set(state) - set(unet) == set(HEAD_SHAPES)
    assert {k: tuple(v.shape) for k, v in state.items() if k.startswith("clc_out.")} == HEAD_SHAPES
    assert all(tuple(state[k].shape) == tuple(v.shape) for k, v in unet.items())
    # 19,073,665 (UNet3D) + conv 512*1024*27 + 1024 + BN 2*1024 + fc 1024*44 + 44
    assert sum(p.numel() for p in net.parameters()) == 19_073_665 + 14_156_800 + 2_048 + 45_100
    classifier = SemanticGenesisClassifier(cls_classes=44).state_dict()
    assert len(classifier) == 65 and set(classifier) <= set(state)
    assert not any(k.startswith(("up_tr", "out_tr")) for k in classifier)


def test_outputs_and_width():
    torch.manual_seed(0)
    net = SemanticGenesisNet(cls_classes=5, width=0.25).eval()
    x = torch.rand(2, 1, 16, 16, 8)
    with torch.no_grad():
        restored, logits = net(x)
    assert restored.shape == x.shape and logits.shape == (2, 5)
    assert float(restored.min()) >= 0.0 and float(restored.max()) <= 1.0  # UNet3D's sigmoid output
    assert not torch.allclose(logits.softmax(1), torch.ones(2, 5) / 5), "logits, not constant probabilities"
    assert net.clc_out.conv1.out_channels == 256 and net.clc_out.conv1.in_channels == net.feature_channels == 128
    # the encoder-only variant computes the same logits from the same weights
    classifier = SemanticGenesisClassifier(cls_classes=5, width=0.25).eval()
    classifier.load_state_dict({k: v for k, v in net.state_dict().items() if k in classifier.state_dict()})
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), logits)


def test_torchscript_matches_eager():
    net = SemanticGenesisNet(cls_classes=3, width=0.25).eval()
    x = torch.rand(1, 1, 16, 16, 8)
    scripted = torch.jit.script(net)
    for a, b in zip(scripted(x), net(x)):
        torch.testing.assert_close(a, b)


def test_too_few_classes_is_refused():
    with pytest.raises(ValueError, match="cls_classes"):
        SemanticGenesisNet(cls_classes=1)


def _published_layout(net: SemanticGenesisNet) -> dict:
    """What the released files look like (fact sheet §1.5): 'module.' keys, encoder copies under the misspelt
    'classficationNet.', projection head and prototypes, plus the training-script extras."""
    state = net.state_dict()
    raw = {"module." + k: v for k, v in state.items()}
    raw.update({"module.classficationNet." + k: torch.zeros_like(v) for k, v in state.items()
                if k.startswith("down_tr")})
    raw["module.projection_head.0.weight"] = torch.rand(8, 4)
    raw["module.prototypes.weight"] = torch.rand(16, 8)
    return {"epoch": 7, "state_dict": raw, "optimizer_state_dict": {}, "best_loss": 0.1}


def test_published_layout_loads_strictly_with_its_head(tmp_path):
    torch.manual_seed(1)
    net = SemanticGenesisNet(cls_classes=50, width=0.25)
    path = tmp_path / "TransVW_chest_ct.pt"
    torch.save(_published_layout(net), path)
    state, report = import_checkpoint(str(path), method="transvw", keep_head=True, return_report=True,
                                      target=SemanticGenesisNet(cls_classes=50, width=0.25))
    fresh = SemanticGenesisNet(cls_classes=50, width=0.25)
    fresh.load_state_dict(state, strict=True)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)  # the direct keys win over classficationNet copies
    assert any("projection_head" in k for k in report.dropped) and any("prototypes" in k for k in report.dropped)
    # default target with keep_head: SemanticGenesisNet of the checkpoint's C and width
    default_state = import_checkpoint(str(path), method="transvw", keep_head=True)
    SemanticGenesisNet(cls_classes=head_classes(default_state), width=0.25).load_state_dict(default_state, strict=True)
    # without keep_head: the encoder-decoder for fine-tuning
    unet_state = import_checkpoint(str(path), method="transvw", target=UNet3D(width=0.25))
    UNet3D(width=0.25).load_state_dict(unet_state, strict=True)


def test_our_pretraining_checkpoint_fine_tunes_and_continues(tmp_path):
    torch.manual_seed(2)
    net = SemanticGenesisNet(cls_classes=6, width=0.25)
    path = tmp_path / "pretrained.pt"
    torch.save({"model": net.state_dict(), "provenance": {"method": "semantic_genesis"}}, path)
    unet = load_pretrained_weights(UNet3D(width=0.25), str(path), method="semantic_genesis")
    torch.testing.assert_close(unet.out_tr.final_conv.weight, net.out_tr.final_conv.weight)
    again = load_pretrained_weights(SemanticGenesisNet(cls_classes=6, width=0.25), str(path), method="semantic_genesis")
    torch.testing.assert_close(again.clc_out.fc1.weight, net.clc_out.fc1.weight)  # head kept automatically
    with pytest.raises(ValueError, match="clc_out"):  # a head of another C does not fit
        load_pretrained_weights(SemanticGenesisNet(cls_classes=7, width=0.25), str(path), method="semantic_genesis")


def test_keep_head_errors_name_the_problem(tmp_path):
    path = tmp_path / "mg.pt"
    torch.save({"state_dict": UNet3D(width=0.25).state_dict()}, path)
    with pytest.raises(ValueError, match="no pretraining head"):
        import_checkpoint(str(path), method="models_genesis", keep_head=True)
    with pytest.raises(ValueError, match="clc_out.fc1.weight"):
        import_checkpoint(str(path), method="semantic_genesis", keep_head=True)


def test_cli_keep_head_writes_a_strictly_loadable_file(tmp_path, capsys):
    net = SemanticGenesisNet(cls_classes=4, width=0.25)
    src = tmp_path / "semantic_genesis_chest_ct.pt"
    torch.save(_published_layout(net), src)
    dst = tmp_path / "pretrained.pt"
    import_weights_cli(str(src), str(dst), method="semantic_genesis", keep_head="true")
    saved = torch.load(dst, weights_only=True)
    assert saved["provenance"]["network"]["args"] == {"width": 0.25, "cls_classes": 4}
    SemanticGenesisNet(cls_classes=4, width=0.25).load_state_dict(saved["state_dict"], strict=True)
