import logging
import math

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.handlers import from_engine

from genesis_monai.engines import FalsePositiveVolume, VolumeClassificationMetrics, binary_volume_metrics


# ---------------------------------------------------------------------------------------------- FPV
def fpv_case():
    """3 volumes (1, 4, 4, 3): two negative (empty labels), one positive; hand-counted predictions."""
    probs = torch.zeros(3, 1, 4, 4, 3)
    labels = torch.zeros(3, 1, 4, 4, 3)
    probs[0, 0, :2, :2, 0] = 0.9  # negative volume: 4 false-positive voxels
    probs[0, 0, 3, 3, 2] = 0.5  # exactly 0.5 is not positive (the reference rounds, round(0.5) == 0)
    probs[1, 0, 0, :, 1] = 0.7  # negative volume: 4 more, on slice 1
    probs[1, 0, 1, 0, 2] = 0.6  # and 1 on slice 2
    probs[2] = 0.99  # positive volume: its predictions are not false-positive volume
    labels[2, 0, 1, 1, 1] = 1
    return probs, labels


def test_fpv_known_case_voxels_and_ml():
    probs, labels = fpv_case()
    metric = FalsePositiveVolume(spacing=(0.5, 0.5, 5.0))  # 1.25 mm^3 per voxel
    metric.update((probs, labels))
    assert metric.result() == {"voxels": 9.0, "ml": pytest.approx(9 * 1.25 / 1000), "negatives": 2}
    assert metric.compute() == 9.0


def test_fpv_logits_and_threshold():
    probs, labels = fpv_case()
    logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6))
    metric = FalsePositiveVolume(sigmoid=True)
    metric.update((logits, labels))
    assert metric.compute() == 9.0
    high = FalsePositiveVolume(threshold=0.65)
    high.update((probs, labels))
    assert high.compute() == 8.0  # the 0.6 voxel drops out


def test_fpv_depths_exclude_padding():
    probs, labels = fpv_case()
    metric = FalsePositiveVolume()
    metric.update((probs, labels, torch.tensor([1, 2, 3])))  # volume 0: 1 slice, volume 1: 2 slices
    assert metric.compute() == 8.0  # volume 1's slice-2 voxel is padding


@pytest.mark.parametrize("decollate", [False, True])
def test_fpv_engine_reads_spacing_and_depth_from_the_batch(decollate):
    probs, labels = fpv_case()
    affine = torch.diag(torch.tensor([0.5, 0.5, 5.0, 1.0]))
    items = [{"image": MetaTensor(torch.zeros(1, 4, 4, 3), affine=affine), "depth": torch.tensor(d)} for d in (1, 2, 3)]
    batch = list_data_collate(items)  # a batched MetaTensor with (3, 4, 4) affines

    def process(engine, b):
        # a MONAI evaluator decollates batch and output before its metrics run; plain engines do not
        if decollate:
            engine.state.batch = decollate_batch(b)
            return decollate_batch({"pred": probs, "label": labels})
        return {"pred": probs, "label": labels}

    metric = FalsePositiveVolume(spacing_key="image", depth_key="depth",
                                 output_transform=from_engine(["pred", "label"]))
    engine = Engine(process)
    metric.attach(engine, "fpv")
    state = engine.run([batch], max_epochs=1)
    assert state.metrics["fpv"] == 8.0  # depths (1, 2, 3): volume 1's slice-2 voxel is padding
    assert state.metrics["fpv_ml"] == pytest.approx(8 * 1.25 / 1000)
    assert state.metrics["fpv_negatives"] == 2


def test_fpv_spacing_from_prediction_meta_and_unknown_spacing():
    probs, labels = fpv_case()
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).expand(3, 4, 4)
    pred = MetaTensor(probs, affine=affine)
    pred.is_batch = True
    metric = FalsePositiveVolume()
    metric.update((pred, labels))
    assert metric.result()["ml"] == pytest.approx(9 * 8 / 1000)
    plain = FalsePositiveVolume()
    plain.update((probs, labels))
    assert plain.result()["voxels"] == 9.0 and math.isnan(plain.result()["ml"])


def test_fpv_accumulates_and_resets():
    probs, labels = fpv_case()
    metric = FalsePositiveVolume()
    metric.update((probs[:1], labels[:1]))
    metric.update((probs[1:], labels[1:]))
    assert metric.compute() == 9.0
    metric.reset()
    assert metric.compute() == 0.0 and metric.result()["negatives"] == 0


def test_fpv_bad_input():
    probs, labels = fpv_case()
    with pytest.raises(ValueError, match="differ"):
        FalsePositiveVolume().update((probs, labels[:, :, :2]))
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        FalsePositiveVolume().update((probs.expand(3, 2, 4, 4, 3), labels.expand(3, 2, 4, 4, 3)))
    with pytest.raises(ValueError, match="has 2 values for 3 spatial dims"):
        FalsePositiveVolume(spacing=(1.0, 1.0)).update((probs, labels))
    with pytest.raises(ValueError, match="positive voxel sizes"):
        FalsePositiveVolume(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="2 depths for a batch of 3"):
        FalsePositiveVolume().update((probs, labels, torch.tensor([1, 2])))
    metric = FalsePositiveVolume(depth_key="depth")
    engine = Engine(lambda e, b: (probs, labels))
    metric.attach(engine, "fpv")
    with pytest.raises(KeyError, match="depth key 'depth' is not in the batch"):
        engine.run([{"image": probs}], max_epochs=1)


# ------------------------------------------------------------------------------- classification
def reference_metrics(probs, labels, threshold=0.5):
    """Plain-Python oracle: pairwise AUC (ties count 1/2) and confusion-matrix scores."""
    pos = [p for p, y in zip(probs, labels) if y == 1]
    neg = [p for p, y in zip(probs, labels) if y == 0]
    auc = (sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
           if pos and neg else float("nan"))
    pred = [1 if p > threshold else 0 for p in probs]
    tp = sum(1 for p, y in zip(pred, labels) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(pred, labels) if p == 1 and y == 0)
    tn = sum(1 for p, y in zip(pred, labels) if p == 0 and y == 0)
    fn = sum(1 for p, y in zip(pred, labels) if p == 0 and y == 1)
    div = lambda a, b: a / b if b else float("nan")  # noqa: E731
    return {"auc": auc, "f1": div(2 * tp, 2 * tp + fp + fn), "sensitivity": div(tp, tp + fn),
            "specificity": div(tn, tn + fp), "accuracy": div(tp + tn, tp + tn + fp + fn)}


def assert_same(result, expected):
    assert set(result) == set(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value), key


def test_binary_metrics_hand_values():
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.5]
    labels = [1, 1, 1, 0, 0, 0, 0]
    result = binary_volume_metrics(torch.tensor(probs), torch.tensor(labels))
    # tp 2, fn 1, fp 1, tn 3 (0.5 is negative); AUC: 10 of 12 pairs ordered right
    hand = {"auc": 10 / 12, "f1": 4 / 6, "sensitivity": 2 / 3, "specificity": 3 / 4, "accuracy": 5 / 7}
    assert_same(result, hand)
    assert_same(result, reference_metrics(probs, labels))


def test_binary_metrics_random_against_oracle():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(40, 1, generator=g)
    labels = (torch.rand(40, 1, generator=g) < 0.4).float()
    assert_same(binary_volume_metrics(probs, labels, threshold=0.4),
                reference_metrics(probs.flatten().tolist(), labels.flatten().tolist(), threshold=0.4))


@pytest.mark.parametrize("labels, undefined", [([0, 0, 0], {"auc", "sensitivity", "f1"}),
                                               ([1, 1, 1], {"auc", "specificity"})])
def test_binary_metrics_degenerate_cases_are_nan_with_a_note(labels, undefined, caplog):
    probs = [0.2, 0.4, 0.3]  # no positive predictions
    with caplog.at_level(logging.WARNING, logger="genesis_monai.engines.volume_metrics"):
        result = binary_volume_metrics(torch.tensor(probs), torch.tensor(labels))
    assert {k for k, v in result.items() if math.isnan(v)} == undefined
    assert_same(result, reference_metrics(probs, labels))
    assert "reported as nan" in caplog.text and "undefined" in caplog.text


def test_binary_metrics_bad_input():
    with pytest.raises(ValueError, match="3 probabilities but 2 labels"):
        binary_volume_metrics(torch.rand(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="apply a sigmoid"):
        binary_volume_metrics(torch.tensor([-2.0, 3.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        binary_volume_metrics(torch.rand(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="no volumes"):
        binary_volume_metrics(torch.zeros(0), torch.zeros(0))


def test_volume_classification_metrics_on_engine():
    probs = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.5])
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0]).float()
    logits = torch.logit(probs)
    # two batches, the second decollated as a MONAI evaluator would pass it
    outputs = [{"pred": logits[:4, None], "label": labels[:4, None]},
               decollate_batch({"pred": logits[4:, None], "label": labels[4:, None]})]
    metric = VolumeClassificationMetrics(sigmoid=True, key="f1", output_transform=from_engine(["pred", "label"]))
    engine = Engine(lambda e, b: outputs[e.state.iteration - 1])
    metric.attach(engine, "cls")
    metrics = engine.run([0, 1], max_epochs=1).metrics
    expected = reference_metrics(probs.tolist(), labels.tolist())
    assert metrics["cls"] == pytest.approx(expected["f1"])
    for key, value in expected.items():
        assert metrics[f"cls_{key}"] == pytest.approx(value)
    with pytest.raises(ValueError, match="key must be one of"):
        VolumeClassificationMetrics(key="dice")


def test_fpv_in_a_monai_evaluator_on_depth_padded_volumes():
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator

    from genesis_monai.data.depth_collate import PrepareVolumeBatch, pad_depth_collate

    affine = torch.diag(torch.tensor([0.5, 0.5, 5.0, 1.0]))
    data = []
    for depth, lesion in ((2, False), (3, False), (4, True)):
        label = torch.zeros(1, 4, 4, depth)
        label[0, 0, 0, 0] = float(lesion)
        data.append({"image": MetaTensor(torch.ones(1, 4, 4, depth), affine=affine), "label": label})

    class EverythingPositive(torch.nn.Module):
        def forward(self, x, depths):
            return torch.full_like(x, 0.9)  # padded slices too: they must not count

    metric = FalsePositiveVolume(spacing_key="image", depth_key="depth",
                                 output_transform=from_engine(["pred", "label"]))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), network=EverythingPositive(), key_val_metric={"fpv": metric},
        val_data_loader=DataLoader(Dataset(data), batch_size=3, collate_fn=pad_depth_collate),
        prepare_batch=PrepareVolumeBatch(target="label"))
    evaluator.run()
    # the two negative scans: 4*4*2 + 4*4*3 voxels of 0.5*0.5*5 mm^3
    assert evaluator.state.metrics == {"fpv": 80.0, "fpv_ml": pytest.approx(0.1), "fpv_negatives": 2}
