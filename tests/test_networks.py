import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genesis_monai.networks import ContBatchNorm3d, GenesisClassifier, GenesisEncoder, UNet3D, check_spatial_size
from genesis_monai.networks.width import scale_channels, validate_width


def _published_state_shapes():
    """The 106 keys and shapes of the published Genesis_Chest_CT.pt, in order, written out from
    research/upstream_genesis.md §1.3 (not from our code): (conv prefix, out, in, kernel) per layer."""
    convs = [("down_tr64.ops.0", 32, 1), ("down_tr64.ops.1", 64, 32), ("down_tr128.ops.0", 64, 64),
             ("down_tr128.ops.1", 128, 64), ("down_tr256.ops.0", 128, 128), ("down_tr256.ops.1", 256, 128),
             ("down_tr512.ops.0", 256, 256), ("down_tr512.ops.1", 512, 256)]
    ups = [("up_tr256", 512, [(256, 768), (256, 256)]), ("up_tr128", 256, [(128, 384), (128, 128)]),
           ("up_tr64", 128, [(64, 192), (64, 64)])]
    shapes = {}

    def luconv(prefix, out, inp):
        shapes[f"{prefix}.conv1.weight"] = (out, inp, 3, 3, 3)
        shapes[f"{prefix}.conv1.bias"] = (out,)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn1.{leaf}"] = (out,)
        shapes[f"{prefix}.bn1.num_batches_tracked"] = ()

    for prefix, out, inp in convs:
        luconv(prefix, out, inp)
    for stage, ch, ops in ups:
        shapes[f"{stage}.up_conv.weight"] = (ch, ch, 2, 2, 2)
        shapes[f"{stage}.up_conv.bias"] = (ch,)
        for i, (out, inp) in enumerate(ops):
            luconv(f"{stage}.ops.{i}", out, inp)
    shapes["out_tr.final_conv.weight"] = (1, 64, 1, 1, 1)
    shapes["out_tr.final_conv.bias"] = (1,)
    return shapes


PUBLISHED_SHAPES = _published_state_shapes()
PARAMS_W1, PARAMS_W05, PARAMS_W025 = 19_073_665, 4_770_625, 1_193_761


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


def _flops(net, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops()


def test_published_key_layout():
    net = UNet3D()
    state = net.state_dict()
    assert len(PUBLISHED_SHAPES) == 106
    assert list(state) == list(PUBLISHED_SHAPES)  # same names, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == PUBLISHED_SHAPES
    assert _n_params(net) == PARAMS_W1
    assert net.width == 1.0 and net.feature_channels == 512


def test_width_quarter_scales_every_hidden_layer_and_keeps_names():
    full, quarter = UNet3D(), UNet3D(width=0.25)
    assert list(quarter.state_dict()) == list(full.state_dict())
    assert _n_params(quarter) == PARAMS_W025 and _n_params(UNet3D(width=0.5)) == PARAMS_W05
    assert 15.0 < PARAMS_W1 / PARAMS_W025 < 17.0
    shapes = {k: tuple(v.shape) for k, v in quarter.state_dict().items()}
    assert shapes["down_tr64.ops.0.conv1.weight"] == (8, 1, 3, 3, 3)  # in_channels not scaled
    assert shapes["down_tr512.ops.1.conv1.weight"] == (128, 64, 3, 3, 3)
    assert shapes["up_tr256.up_conv.weight"] == (128, 128, 2, 2, 2)
    assert shapes["up_tr256.ops.0.conv1.weight"] == (64, 192, 3, 3, 3)
    assert shapes["out_tr.final_conv.weight"] == (1, 16, 1, 1, 1)  # n_class not scaled
    assert quarter.width == 0.25 and quarter.feature_channels == 128
    x = torch.rand(1, 1, 16, 16, 8)
    assert 15.0 < _flops(full.eval(), x) / _flops(quarter.eval(), x) < 17.0


def test_width_validation_and_rounding():
    for bad in (0, -0.5, float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(ValueError, match="width must be"):
            UNet3D(width=bad)
    with pytest.raises(ValueError, match=r"rounds to 0; use width >= 0\.015625"):
        UNet3D(width=0.01)
    assert validate_width(1) == 1.0 and isinstance(validate_width(1), float)
    # nearest integer, halves up (Python's round() would give 2 here)
    assert scale_channels(80, 1 / 32) == 3 and scale_channels(512, 0.25) == 128
    # an odd width: the rounded counts must still chain through encoder, skips and decoder
    net = UNet3D(width=0.3, n_class=2).eval()
    assert net.down_tr64.ops[0].conv1.out_channels == 10  # 9.6 -> 10
    assert net.feature_channels == 154  # 153.6 -> 154
    assert net.up_tr256.ops[0].conv1.in_channels == 154 + 77
    with torch.no_grad():
        assert net(torch.rand(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)
    assert UNet3D(width=1 / 64).down_tr64.ops[0].conv1.out_channels == 1


def test_width_is_a_bundle_config_kwarg():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"network_def": {"_target_": "genesis_monai.networks.UNet3D", "n_class": 1}})
    parser["network_def#width"] = 0.25
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, UNet3D) and net.width == 0.25 and net.feature_channels == 128


def test_forward_shape_and_range_full_cube():
    # the published 64x64x32 cube at demo width (the full width costs ~237 GFLOP per cube)
    net = UNet3D(width=0.25).eval()
    x = torch.rand(2, 1, 64, 64, 32)
    with torch.no_grad():
        out = net(x)
        feat = net.forward_features(x)
    assert out.shape == (2, 1, 64, 64, 32)
    assert out.min() >= 0 and out.max() <= 1
    assert feat.shape == (2, 128, 8, 8, 4)
    with torch.no_grad():
        assert UNet3D().eval().forward_features(torch.rand(1, 1, 16, 16, 8)).shape == (1, 512, 2, 2, 1)
        assert GenesisEncoder(width=0.5)(torch.rand(1, 1, 16, 16, 8)).shape == (1, 256, 2, 2, 1)


def test_output_options():
    x = torch.rand(1, 2, 16, 16, 8)
    net = UNet3D(in_channels=2, n_class=3, out_activation="softmax", act="elu").eval()
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 3, 16, 16, 8)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 16, 16, 8))
    raw, squashed = UNet3D(out_activation="none").eval(), UNet3D().eval()
    squashed.load_state_dict(raw.state_dict())
    x1 = torch.rand(1, 1, 16, 16, 8)
    with torch.no_grad():
        logits = raw(x1)
        torch.testing.assert_close(torch.sigmoid(logits), squashed(x1))
        assert not torch.allclose(logits, squashed(x1))
    assert "down_tr64.ops.0.activation.weight" in UNet3D(act="prelu").state_dict()
    with pytest.raises(ValueError, match="act must be"):
        UNet3D(act="gelu")
    with pytest.raises(ValueError, match="out_activation"):
        UNet3D(out_activation="tanh")


@pytest.mark.parametrize("shape,axis,near", [((1, 1, 20, 16, 8), "X", "16 or 24"), ((1, 1, 16, 16, 12), "Z", "8 or 16")])
def test_indivisible_size_error_names_axis(shape, axis, near):
    with pytest.raises(ValueError, match=f"axis {axis}.*nearest valid sizes: {near}"):
        UNet3D()(torch.rand(*shape))


def test_check_spatial_size_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(N, C, X, Y, Z\)"):
        check_spatial_size([1, 16, 16, 8])


def test_reference_batchnorm_uses_batch_statistics_in_eval():
    torch.manual_seed(0)
    standard = UNet3D()
    reference = UNet3D(reference_batchnorm=True)
    assert isinstance(reference.down_tr64.ops[0].bn1, ContBatchNorm3d)
    reference.load_state_dict(standard.state_dict(), strict=True)  # same keys, same weights
    x = torch.rand(2, 1, 16, 16, 8) * 0.5 + 0.25
    standard.eval(), reference.eval()
    with torch.no_grad():
        out_std = standard(x)
        out_ref = reference(x)
        # reference eval == train-mode normalisation (batch statistics)
        train_mode = UNet3D()
        train_mode.load_state_dict(standard.state_dict())
        out_train = train_mode.train()(x)
        torch.testing.assert_close(out_ref, out_train)
        assert not torch.allclose(out_std, out_ref, atol=1e-4)
        # with batch statistics the output of a sample depends on the rest of the batch
        alone = reference(x[:1])
        assert not torch.allclose(alone, out_ref[:1], atol=1e-5)
        # standard BN in eval mode does not
        torch.testing.assert_close(standard(x[:1]), out_std[:1], atol=1e-5, rtol=1e-4)
    # the reference never touches num_batches_tracked
    assert int(reference.down_tr64.ops[0].bn1.num_batches_tracked) == 0


@pytest.mark.parametrize("width", [1.0, 0.25])
def test_torchscript_export_matches_eager(width):
    net = UNet3D(width=width).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        torch.testing.assert_close(scripted.forward_features(x), net.forward_features(x))
    clf = GenesisClassifier(n_class=2, width=width).eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(clf)(x), clf(x))


def test_classifier_uses_encoder_and_reference_names():
    clf = GenesisClassifier(n_class=2)
    keys = list(clf.state_dict())
    assert "base_model.down_tr64.ops.0.conv1.weight" in keys and "base_model.down_tr512.ops.1.bn1.running_var" in keys
    assert [k for k in keys if not k.startswith("base_model.")] == ["dense_1.weight", "dense_1.bias", "dense_2.weight",
                                                                    "dense_2.bias"]
    # only the encoder is built: the reference keys of the encoder, nothing of the decoder
    assert [k[len("base_model."):] for k in keys if k.startswith("base_model.")] == [
        k for k in PUBLISHED_SHAPES if k.startswith("down_tr")]
    assert not any(k.startswith(("base_model.up_tr", "base_model.out_tr")) for k in keys)
    assert clf.dense_1.in_features == 512 and clf.dense_1.out_features == 1024 and clf.feature_channels == 512
    out = clf(torch.rand(3, 1, 16, 16, 8))
    assert out.shape == (3, 2)
    # every parameter gets a gradient: DDP works without find_unused_parameters
    out.sum().backward()
    assert all(p.grad is not None for p in clf.parameters())


def test_classifier_width_sizes_the_head():
    clf = GenesisClassifier(n_class=3, width=0.25)
    assert clf.width == 0.25 and clf.feature_channels == 128
    assert (clf.dense_1.in_features, clf.dense_1.out_features, clf.dense_2.in_features) == (128, 256, 256)
    assert clf(torch.rand(2, 1, 16, 16, 8)).shape == (2, 3)
