"""genesis_monai.engines.speed.optimize_network: channels-last and torch.compile as safe, opt-in options."""

import logging

import pytest
import torch
from torch import nn

from genesis_monai.engines.speed import channels_last_format, optimize_network
from genesis_monai.networks import UNet3D


def _small3d():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1)).eval()


def test_defaults_change_nothing():
    net = _small3d()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = optimize_network(net)
    assert out is net
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
        assert v.is_contiguous()


def test_channels_last_3d_on_cpu_keeps_results():
    net = _small3d()
    x = torch.rand(2, 1, 8, 8, 8)
    with torch.no_grad():
        expected = net(x)
    out = optimize_network(net, channels_last=True, device="cpu")
    assert out is net
    w = net[3].weight  # 4 input channels: the two layouts differ
    assert w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)


def test_channels_last_on_the_genesis_unet_keeps_state_dict_keys():
    net = UNet3D().eval()
    keys = list(net.state_dict())
    optimize_network(net, channels_last=True)
    assert list(net.state_dict()) == keys
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 8, 8, 8)).shape == (1, 1, 8, 8, 8)


def test_format_choice_and_no_op_with_reason(caplog):
    assert channels_last_format(_small3d()) is torch.channels_last_3d
    assert channels_last_format(nn.Conv2d(1, 1, 3)) is torch.channels_last
    mlp = nn.Sequential(nn.Linear(4, 4))
    assert channels_last_format(mlp) is None
    with caplog.at_level(logging.INFO, logger="genesis_monai.engines.speed"):
        assert optimize_network(mlp, channels_last=True) is mlp
    assert "channels_last skipped" in caplog.text and "no 2-D or 3-D convolution" in caplog.text


def test_compile_in_place_keeps_keys_and_results(caplog):
    net = _small3d()
    keys = list(net.state_dict())
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        expected = net(x)
    # the "eager" backend exercises torch.compile's graph capture without the slow C++ inductor build
    out = optimize_network(net, compile=True, compile_kwargs={"backend": "eager"})
    assert out is net and list(net.state_dict()) == keys  # no "_orig_mod." prefix: checkpoints stay loadable
    assert getattr(net, "_compiled_call_impl", None) is not None
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected)
    torch._dynamo.reset()


def test_compile_on_cpu_with_inductor_warns(caplog, monkeypatch):
    net = _small3d()
    calls = []
    monkeypatch.setattr(net, "compile", lambda **kw: calls.append(kw))  # do not build inductor kernels here
    with caplog.at_level(logging.WARNING, logger="genesis_monai.engines.speed"):
        optimize_network(net, compile=True)
    assert calls == [{}]
    assert "compiling Sequential for the CPU" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_channels_last_and_amp_on_cuda():
    net = optimize_network(UNet3D(), channels_last=True, device="cuda").eval()
    x = torch.rand(1, 1, 32, 32, 32, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        y = net(x)
    assert y.shape == (1, 1, 32, 32, 32) and torch.isfinite(y).all()
