import pytest
import torch

from genesis_monai.networks import ContBatchNorm3d, GenesisClassifier, UNet3D, check_spatial_size

# keys and shapes of the published Genesis_Chest_CT.pt (METHODS.md §1, research/upstream_genesis.md §1.3)
PUBLISHED_SHAPES = {
    "down_tr64.ops.0.conv1.weight": (32, 1, 3, 3, 3),
    "down_tr64.ops.1.conv1.weight": (64, 32, 3, 3, 3),
    "down_tr128.ops.1.conv1.weight": (128, 64, 3, 3, 3),
    "down_tr512.ops.1.conv1.weight": (512, 256, 3, 3, 3),
    "up_tr256.up_conv.weight": (512, 512, 2, 2, 2),
    "up_tr256.ops.0.conv1.weight": (256, 768, 3, 3, 3),
    "up_tr128.ops.0.conv1.weight": (128, 384, 3, 3, 3),
    "up_tr64.ops.0.conv1.weight": (64, 192, 3, 3, 3),
    "out_tr.final_conv.weight": (1, 64, 1, 1, 1),
    "down_tr64.ops.0.bn1.num_batches_tracked": (),
}


def test_published_key_layout():
    state = UNet3D().state_dict()
    assert len(state) == 106
    for key, shape in PUBLISHED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(p.numel() for p in UNet3D().parameters()) == 19_073_665
    # every stage has two LUConvs with conv1/bn1 and the BN buffers
    for stage in ["down_tr64", "down_tr128", "down_tr256", "down_tr512", "up_tr256", "up_tr128", "up_tr64"]:
        for i in (0, 1):
            for leaf in ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]:
                assert f"{stage}.ops.{i}.{leaf}" in state


def test_forward_shape_and_range_full_cube():
    net = UNet3D().eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 64, 32))
    assert out.shape == (2, 1, 64, 64, 32)
    assert out.min() >= 0 and out.max() <= 1
    feat = net.forward_features(torch.rand(2, 1, 64, 64, 32))
    assert feat.shape == (2, 512, 8, 8, 4)


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


def test_torchscript_export_matches_eager():
    net = UNet3D().eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


def test_classifier_uses_encoder_and_reference_names():
    clf = GenesisClassifier(n_class=2)
    keys = clf.state_dict().keys()
    assert "base_model.down_tr64.ops.0.conv1.weight" in keys and "dense_1.weight" in keys and "dense_2.bias" in keys
    assert clf.dense_1.in_features == 512 and clf.dense_1.out_features == 1024
    out = clf(torch.rand(3, 1, 16, 16, 8))
    assert out.shape == (3, 2)
    # gradients reach the encoder
    out.sum().backward()
    assert clf.base_model.down_tr64.ops[0].conv1.weight.grad is not None
    assert clf.base_model.up_tr64.ops[0].conv1.weight.grad is None  # decoder unused
