"""SMART-Net networks: the 2D multi-task SMARTNet, its segmentation form, scSE, and the 2D -> 3D downstream nets."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import resnet50

from genesis_monai.networks import (SCSEBlock, SMARTNet, SMARTNetEncoder, SMARTNetSegmentation,
                                    SMARTNetVolumeClassifier, SMARTNetVolumeSegmenter)

W = 0.125  # demo width: encoder 8/32/64/128/256 channels, decoders 32/16/8/4, last block 2
COMBOS = ["cls", "seg", "rec", "cls+seg", "cls+rec", "seg+rec", "cls+seg+rec"]
PREFIXES = {"cls": {"classification_head"}, "seg": {"seg_decoder", "segmentation_head"},
            "rec": {"rec_decoder", "reconstruction_head"}}


@pytest.fixture(scope="module")
def upstream():
    torch.manual_seed(0)
    return SMARTNet(pretexts="cls+seg+rec", width=W).eval()


@pytest.mark.parametrize("pretexts", COMBOS)
def test_outputs_and_key_prefixes_for_every_pretext_combination(pretexts):
    torch.manual_seed(0)
    net = SMARTNet(pretexts=pretexts, width=W).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        out = net(x)
    heads = pretexts.split("+")
    assert sorted(out) == sorted(heads)
    expected_shape = {"cls": (1, 1), "seg": (1, 1, 32, 32), "rec": (1, 1, 32, 32)}
    assert {k: tuple(v.shape) for k, v in out.items()} == {h: expected_shape[h] for h in heads}
    prefixes = {k.split(".", 1)[0] for k in net.state_dict()}
    assert prefixes == {"encoder"}.union(*(PREFIXES[h] for h in heads))


def test_pretexts_as_list_and_bad_pretexts():
    assert SMARTNet(pretexts=["seg", "cls"], width=W).pretexts == ("cls", "seg")
    for bad in ("cls+foo", "", "cls+cls", ["seg", "bogus"]):
        with pytest.raises(ValueError, match="pretexts"):
            SMARTNet(pretexts=bad, width=W)
    with pytest.raises(ValueError, match="dropout"):
        SMARTNet(dropout=1.0, width=W)
    with pytest.raises(ValueError, match="decoder_channels"):
        SMARTNet(decoder_channels=(64, 32, 16), width=W)


def test_width_one_keys_torchvision_names_and_2022_layout():
    # oracle: MONAI's torchvision-compatible ResNet-50 (research C1: 320 torchvision keys), fc removed
    reference = {k: tuple(v.shape) for k, v in resnet50(spatial_dims=2, n_input_channels=1, conv1_t_stride=2,
                                                        bias_downsample=False).state_dict().items()
                 if not k.startswith("fc.")}
    net = SMARTNet(width=1.0)
    state = net.state_dict()
    encoder = {k[len("encoder."):]: tuple(v.shape) for k, v in state.items() if k.startswith("encoder.")}
    assert list(encoder) == list(reference) and encoder == reference and len(encoder) == 318
    assert not any(k.startswith(("encoder.fc", "encoder.avgpool")) for k in state)
    assert net.encoder.conv1.stride == (1, 1) and net.encoder.conv1.kernel_size == (7, 7)
    shapes = {
        "classification_head.3.weight": (1, 2048),
        "seg_decoder.blocks.0.conv1.0.weight": (256, 2048 + 1024, 3, 3),
        "seg_decoder.blocks.0.conv1.1.running_var": (256,),
        "seg_decoder.blocks.3.conv1.0.weight": (32, 64 + 64, 3, 3),
        "seg_decoder.last_block.attention1.attention.cSE.1.weight": (2, 32, 1, 1),
        "seg_decoder.last_block.attention2.attention.sSE.0.weight": (1, 16, 1, 1),
        "seg_decoder.last_block.conv2.1.weight": (16,),
        "segmentation_head.0.weight": (1, 16, 3, 3),
        "rec_decoder.blocks.0.upsample.upsample.0.weight": (4 * 2048, 2048, 1, 1),
        "rec_decoder.blocks.0.conv1.0.bias": (256,),  # no BN in the reconstruction blocks: biased convs
        "rec_decoder.blocks.3.conv2.0.weight": (32, 32, 3, 3),
        "rec_decoder.last_block.conv1.0.weight": (16, 32, 3, 3),
        "reconstruction_head.0.weight": (1, 16, 3, 3),
    }
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert not any(k.startswith("rec_decoder.blocks.") and ".conv1.1." in k for k in state)
    assert "seg_decoder.blocks.0.conv1.0.bias" not in state  # conv before BN has no bias


def test_encoder_feature_maps_and_stride_16(upstream):
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        maps = upstream.encode(x)
    assert [tuple(m.shape) for m in maps] == [(1, 8, 64, 64), (1, 32, 32, 32), (1, 64, 16, 16), (1, 128, 8, 8),
                                              (1, 256, 4, 4)]
    assert upstream.encoder.out_channels == [8, 32, 64, 128, 256]
    assert isinstance(upstream.encoder, SMARTNetEncoder)


def test_bad_inputs_are_named(upstream):
    with pytest.raises(ValueError, match="W = 40 .*divisible by 16"):
        upstream(torch.rand(1, 1, 32, 40))
    with pytest.raises(ValueError, match="1 input channel"):
        upstream(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        upstream(torch.rand(1, 1, 32, 32, 4))


def test_initialisation_follows_the_2022_code(upstream):
    block = upstream.seg_decoder.blocks[1].conv1
    assert torch.all(block[1].weight == 1) and torch.all(block[1].bias == 0)
    assert torch.all(upstream.classification_head[3].bias == 0)
    assert torch.all(upstream.rec_decoder.blocks[0].conv1[0].bias == 0)
    # kaiming-uniform fan_in (relu): bound sqrt(6 / fan_in); xavier-uniform head: sqrt(6 / (fan_in + fan_out))
    w = upstream.seg_decoder.blocks[1].conv1[0].weight
    fan_in = w.shape[1] * 9
    w = w.detach()
    assert float(w.abs().max()) <= (6.0 / fan_in) ** 0.5 and float(w.abs().max()) > 0.5 * (6.0 / fan_in) ** 0.5
    h = upstream.classification_head[3].weight.detach()
    assert float(h.abs().max()) <= (6.0 / (h.shape[1] + 1)) ** 0.5


def test_gradients_reach_every_head(upstream):
    net = SMARTNet(width=W).train()
    out = net(torch.rand(2, 1, 16, 16))
    sum(v.mean() for v in out.values()).backward()
    for name in ("encoder.conv1", "classification_head.3", "segmentation_head.0", "reconstruction_head.0",
                 "seg_decoder.last_block.attention1.attention.cSE.1", "rec_decoder.blocks.0.upsample.upsample.0"):
        grad = dict(net.named_parameters())[name + ".weight"].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_torchscript_matches_eager():
    net = SMARTNet(pretexts="cls+seg+rec", width=W).eval()
    x = torch.rand(2, 1, 32, 32)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        eager, script = net(x), scripted(x)
        assert sorted(script) == sorted(eager)
        for k in eager:
            torch.testing.assert_close(script[k], eager[k])
        torch.testing.assert_close(scripted.encode(x)[4], net.encode(x)[4])


def test_segmentation_form_loads_strictly_and_returns_probabilities(upstream, tmp_path):
    seg = SMARTNetSegmentation(width=W).eval()
    seg.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        prob = seg(x)
        torch.testing.assert_close(prob, torch.sigmoid(upstream(x)["seg"]))
        torch.testing.assert_close(torch.jit.script(seg)(x), prob)
    assert isinstance(prob, torch.Tensor) and prob.shape == (2, 1, 32, 32)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
    with pytest.raises(ValueError, match="no 'seg'"):
        SMARTNetSegmentation(pretexts="cls+rec", width=W)
    # MONAI's own bundle check, on a minimal config + metadata
    config = {"network_def": {"_target_": "genesis_monai.networks.SMARTNetSegmentation", "width": W}}
    meta = {"network_data_format": {
        "inputs": {"image": {"type": "image", "format": "hounsfield", "num_channels": 1, "spatial_shape": [32, 32],
                             "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                             "channel_def": {"0": "image"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": [32, 32],
                             "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                             "channel_def": {"0": "hemorrhage"}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    (tmp_path / "m.json").write_text(json.dumps(meta))
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=str(tmp_path / "m.json"), config_file=str(tmp_path / "c.json"),
                      device="cpu")


def test_scse_matches_its_formula():
    torch.manual_seed(0)
    block = SCSEBlock(32, reduction=16)
    x = torch.randn(2, 32, 5, 6)
    c1, c2, s = block.cSE[1], block.cSE[3], block.sSE[0]
    gate_c = torch.sigmoid(c2(torch.relu(c1(x.mean(dim=(2, 3), keepdim=True)))))
    gate_s = torch.sigmoid(s(x))
    torch.testing.assert_close(block(x), x * gate_c + x * gate_s)
    assert c1.out_channels == 2 and SCSEBlock(4).cSE[1].out_channels == 1  # narrow widths keep >= 1 channel
    assert sorted(block.state_dict()) == ["cSE.1.bias", "cSE.1.weight", "cSE.3.bias", "cSE.3.weight", "sSE.0.bias",
                                          "sSE.0.weight"]
    with pytest.raises(ValueError, match="channels"):
        SCSEBlock(0)


# ---- 2D -> 3D downstream networks ----------------------------------------------------------------------------


def _count_encoder_slices(net):
    sizes = []
    handle = net.encoder.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    return sizes, handle


def test_volume_classifier_packing_ignores_padding():
    torch.manual_seed(0)
    net = SMARTNetVolumeClassifier(width=W, slice_batch=3).eval()
    short, full = torch.rand(1, 1, 32, 32, 3), torch.rand(1, 1, 32, 32, 5)
    padded = torch.cat([torch.cat([short, torch.full((1, 1, 32, 32, 2), 5.0)], dim=-1), full])
    sizes, handle = _count_encoder_slices(net)
    with torch.no_grad():
        batched = net(padded, depths=torch.tensor([3, 5]))
        handle.remove()
        alone = torch.cat([net(short), net(full)])
        unmasked = net(padded)
    assert batched.shape == (2, 1)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-4), "the padding would change volume 0 if used"
    # 8 valid slices encoded in chunks of slice_batch = 3, padded ones never
    assert sizes == [3, 3, 2]
    # eval output does not depend on the chunk size
    net.slice_batch = 64
    with torch.no_grad():
        torch.testing.assert_close(net(padded, depths=torch.tensor([3, 5])), batched, atol=1e-5, rtol=1e-4)


def test_volume_classifier_shapes_keys_and_bad_depths():
    net = SMARTNetVolumeClassifier(width=W).eval()
    assert net.LSTM.hidden_size == 64 and net.LSTM.num_layers == 2 and net.LSTM.bidirectional
    assert net.LSTM.input_size == 256 and net.fc.in_features == 128 and net.head.out_features == 1
    prefixes = {k.split(".", 1)[0] for k in net.state_dict()}
    assert prefixes == {"encoder", "LSTM", "fc", "head"}
    x = torch.rand(2, 1, 32, 32, 4)
    for bad, match in (([2], r"shape \(2,\)"), ([0, 4], r"\[1, 4\]"), ([2, 5], r"\[1, 4\]"),
                       (torch.tensor([1.5, 2.0]), "whole numbers")):
        with pytest.raises(ValueError, match=match):
            net(x, depths=torch.as_tensor(bad))
    with pytest.raises(ValueError, match="depth last"):
        net(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("depth", [1, 5])
def test_volume_segmenter_shapes(depth):
    net = SMARTNetVolumeSegmenter(width=W).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 32, 32, depth))
    assert out.shape == (2, 1, 32, 32, depth)
    assert net.conv1.in_channels == net.seg_decoder.out_channels == 2 and net.head.out_channels == 1


def test_volume_segmenter_padding_gives_zero_features_and_scripts():
    torch.manual_seed(0)
    net = SMARTNetVolumeSegmenter(width=W, slice_batch=2).eval()
    x = torch.rand(2, 1, 32, 32, 4)
    seen = []
    handle = net.conv1.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    sizes, handle2 = _count_encoder_slices(net)
    with torch.no_grad():
        out = net(x, depths=torch.tensor([2, 4]))
        single = net(x[:1, ..., :2])
    handle.remove(), handle2.remove()
    stacked = seen[0]  # (B, F, H, W, D) stack fed to the 3D operator
    assert out.shape == (2, 1, 32, 32, 4) and sizes[:3] == [2, 2, 2]
    assert torch.all(stacked[0, ..., 2:] == 0) and float(stacked[0, ..., :2].abs().sum()) > 0
    torch.testing.assert_close(stacked[0, ..., :2], seen[1][0])  # same per-slice maps as the unpadded volume
    assert single.shape == (1, 1, 32, 32, 2)
    small = x[:1, ..., :2]
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(small), single)
