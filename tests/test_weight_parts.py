"""The parts rule of checkpoint loading: SMART-Net's upstream encoder (and decoder) into the 2D->3D networks."""

from __future__ import annotations

import pytest
import torch

from genesis_monai.networks import SMARTNet, SMARTNetVolumeClassifier, SMARTNetVolumeSegmenter
from genesis_monai.weights import import_checkpoint, load_pretrained_weights

W = 0.125


@pytest.fixture(scope="module")
def upstream():
    torch.manual_seed(0)
    return SMARTNet(width=W)


def _save(tmp_path, obj, name="pretrained.pt"):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def test_encoder_part_loads_from_the_2022_checkpoint_layout(upstream, tmp_path):
    state = upstream.state_dict()
    # the 2022 code's file: {"model_state_dict": ..., "epoch": ...}, DataParallel "module." prefixes
    path = _save(tmp_path, {"model_state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3})
    net = load_pretrained_weights(SMARTNetVolumeClassifier(width=W), path, method="smart_net")
    got = net.state_dict()
    enc = [k for k in state if k.startswith("encoder.")]
    assert len([k for k in enc if not k.endswith("num_batches_tracked")]) >= 265
    for k in enc:
        assert torch.equal(got[k], state[k]), k
    _, report = import_checkpoint(path, method="smart_net", target=SMARTNetVolumeClassifier(width=W),
                                  return_report=True)
    assert all(k.startswith("encoder.") for k in report.matched)
    # everything else of the target is new (BiLSTM + fc): only those stay at initialisation
    assert report.new_head and all(not k.startswith("encoder.") for k in report.new_head)
    assert "module.classification_head.3.weight" in report.dropped


def test_encoder_and_decoder_parts_into_the_volume_segmenter(upstream, tmp_path):
    state = upstream.state_dict()
    path = _save(tmp_path, {"model": state, "provenance": {"method": "smart_net"}})
    seg = load_pretrained_weights(SMARTNetVolumeSegmenter(width=W), path, method="smart_net",
                                  parts=["encoder.", "seg_decoder"])
    got = seg.state_dict()
    for k, v in state.items():
        if k.startswith(("encoder.", "seg_decoder.")):
            assert torch.equal(got[k], v), k
    _, report = import_checkpoint(path, method="smart_net", target=SMARTNetVolumeSegmenter(width=W),
                                  return_report=True, parts=["encoder.", "seg_decoder."])
    assert report.new_head and not any(k.startswith(("encoder.", "seg_decoder.")) for k in report.new_head)


def test_the_upstream_network_itself_loads_by_name_and_shape(upstream, tmp_path):
    path = _save(tmp_path, {"model": upstream.state_dict()})
    state = import_checkpoint(path, method="smart_net", target=SMARTNet(width=W))
    SMARTNet(width=W).load_state_dict(state, strict=True)


def test_parts_errors_name_the_problem(upstream, tmp_path):
    cls_only = _save(tmp_path, SMARTNet(pretexts="cls", width=W).state_dict(), "cls.pt")
    with pytest.raises(ValueError, match=r"has no tensors under \['seg_decoder.'\]"):
        load_pretrained_weights(SMARTNetVolumeSegmenter(width=W), cls_only, method="smart_net",
                                parts=["encoder.", "seg_decoder."])
    full = _save(tmp_path, upstream.state_dict(), "full.pt")
    with pytest.raises(ValueError, match=r"SMARTNetVolumeClassifier has no parameters under \['seg_decoder.'\]"):
        load_pretrained_weights(SMARTNetVolumeClassifier(width=W), full, method="smart_net", parts="seg_decoder")
    wide = _save(tmp_path, SMARTNet(pretexts="cls", width=0.25).state_dict(), "wide.pt")
    with pytest.raises(ValueError, match=r"another shape .*encoder.conv1.weight"):
        load_pretrained_weights(SMARTNetVolumeClassifier(width=W), wide, method="smart_net")
    # a checkpoint of another network: nothing under encoder. at all
    other = _save(tmp_path, {"down_tr64.ops.0.conv1.weight": torch.zeros(8, 1, 3, 3, 3)}, "other.pt")
    with pytest.raises(ValueError, match=r"no tensors under \['encoder.'\]"):
        load_pretrained_weights(SMARTNetVolumeSegmenter(width=W), other, method="smart_net")
    with pytest.raises(ValueError, match="parts must name"):
        load_pretrained_weights(SMARTNetVolumeSegmenter(width=W), full, method="smart_net", parts=[])
