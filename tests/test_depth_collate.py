import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.transforms import PadListDataCollate
from torch import nn

from genesis_monai.data.depth_collate import PrepareVolumeBatch, pad_depth_collate


def volume(depth, fg=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 4, 5, depth, generator=g) + 0.1  # never 0: padding is recognisable
    label = torch.zeros(1, 4, 5, depth)
    if fg:
        label[0, 1, 2, depth - 1] = 1
    return {"image": image, "label": label}


def test_pads_depth_at_the_end_and_records_depths():
    items = [volume(3, seed=1), volume(6, fg=True, seed=2), volume(4, seed=3)]
    batch = pad_depth_collate(items)
    assert batch["image"].shape == (3, 1, 4, 5, 6) and batch["label"].shape == (3, 1, 4, 5, 6)
    assert batch["depth"].dtype == torch.long and batch["depth"].tolist() == [3, 6, 4]
    for i, item in enumerate(items):
        d = item["image"].shape[-1]
        torch.testing.assert_close(batch["image"][i, ..., :d].as_tensor(), item["image"])  # data first
        assert not batch["image"][i, ..., d:].any() and not batch["label"][i, ..., d:].any()  # zeros after
        assert "depth" not in item  # the dataset's dicts are not modified
    assert items[0]["image"].shape[-1] == 3


def test_equal_depths_numpy_and_meta_data():
    affine = torch.diag(torch.tensor([0.5, 0.5, 5.0, 1.0]))
    items = [{"image": MetaTensor(torch.rand(1, 4, 5, d), affine=affine), "label": np.zeros((1, 4, 5, d)),
              "name": f"v{d}"} for d in (2, 2)]
    batch = pad_depth_collate(items)
    assert batch["depth"].tolist() == [2, 2] and batch["name"] == ["v2", "v2"]
    torch.testing.assert_close(batch["image"].affine[1], affine.double())
    items = [{"image": MetaTensor(torch.rand(1, 4, 5, d), affine=affine), "label": torch.zeros(1, 4, 5, d)}
             for d in (2, 5)]
    padded = pad_depth_collate(items)
    # MONAI's padding records itself: its inverse crops a decollated volume back to its depth
    restored = PadListDataCollate.inverse({"image": padded["image"][0]})
    assert restored["image"].shape == (1, 4, 5, 2)


def test_collate_errors_name_item_and_key():
    with pytest.raises(ValueError, match=r"batch\[1\]\['image'\] is \(1, 4, 6, 3\).*only the depth"):
        pad_depth_collate([volume(3), {"image": torch.rand(1, 4, 6, 3), "label": torch.zeros(1, 4, 6, 3)}])
    with pytest.raises(KeyError, match=r"batch\[0\] has no key\(s\) \['label'\]"):
        pad_depth_collate([{"image": torch.rand(1, 4, 5, 3)}])
    with pytest.raises(ValueError, match="keys have different depths"):
        pad_depth_collate([{"image": torch.rand(1, 4, 5, 3), "label": torch.zeros(1, 4, 5, 2)}])
    with pytest.raises(ValueError, match=r"must be \(C, H, W, D\)"):
        pad_depth_collate([{"image": torch.rand(4, 5, 3), "label": torch.zeros(4, 5, 3)}])
    with pytest.raises(ValueError, match="non-empty list"):
        pad_depth_collate([])


class DepthAwareNet(nn.Module):
    """Mean of every volume over its true slices only, as (B, 1) logits; records the calls."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = []

    def forward(self, x, depths):
        inside = torch.arange(x.shape[-1])[None, :] < depths[:, None]
        per_slice = x.mean(dim=(1, 2, 3))  # (B, D)
        means = (per_slice * inside).sum(1, keepdim=True) / depths[:, None]
        self.calls.append((x.shape, depths.clone(), depths.device, means.detach()))
        return self.scale * means


def test_prepare_volume_batch_in_supervised_trainer():
    data = [volume(3, seed=1), volume(5, fg=True, seed=2), volume(2, seed=3), volume(4, fg=True, seed=4)]
    loader = DataLoader(Dataset(data), batch_size=2, collate_fn=pad_depth_collate)
    net = DepthAwareNet()
    targets_seen = []

    def loss(pred, target):
        targets_seen.append(target)
        return nn.functional.binary_cross_entropy_with_logits(pred, target)

    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=net,
                                optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss,
                                prepare_batch=PrepareVolumeBatch(target="volume_label"))
    trainer.run()
    assert [c[0][-1] for c in net.calls] == [5, 4]  # padded to each batch's max depth
    assert [c[1].tolist() for c in net.calls] == [[3, 5], [2, 4]]
    assert all(c[2].type == "cpu" for c in net.calls)
    assert [t.tolist() for t in targets_seen] == [[[0.0], [1.0]], [[0.0], [1.0]]]
    # the mean over true slices: padding did not dilute it
    means = torch.cat([c[3] for c in net.calls]).flatten()
    torch.testing.assert_close(means, torch.stack([d["image"].mean() for d in data]))


def test_prepare_volume_batch_label_target_in_evaluator():
    data = [volume(3, fg=True, seed=1), volume(5, seed=2)]
    loader = DataLoader(Dataset(data), batch_size=2, collate_fn=pad_depth_collate)
    net = DepthAwareNet()
    seen = []
    prep = PrepareVolumeBatch(target="label")

    def capture(batchdata, device=None, non_blocking=False, **kwargs):
        out = prep(batchdata, device, non_blocking, **kwargs)
        seen.append(out)
        return out

    SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=net, prepare_batch=capture).run()
    inputs, targets, args, kwargs = seen[0]
    assert inputs.shape == (2, 1, 4, 5, 5) and targets.shape == (2, 1, 4, 5, 5)
    assert not isinstance(inputs, MetaTensor) and targets.dtype == torch.float32
    assert args == () and kwargs["depths"].tolist() == [3, 5]
    assert targets[0, 0, 1, 2, 2] == 1


def test_prepare_volume_batch_without_depths_and_errors():
    batch = {"image": torch.rand(2, 1, 4, 5, 3), "label": torch.zeros(2, 1, 4, 5, 3, dtype=torch.uint8)}
    inputs, targets, args, kwargs = PrepareVolumeBatch(target="volume_label", depths_arg="lengths")(batch)
    assert kwargs["lengths"].tolist() == [3, 3] and targets.tolist() == [[0.0], [0.0]]
    with pytest.raises(ValueError, match="target must be one of"):
        PrepareVolumeBatch(target="mask")
    with pytest.raises(KeyError, match=r"no key\(s\) \['label'\]"):
        PrepareVolumeBatch()({"image": batch["image"]})
    with pytest.raises(ValueError, match=r"depths in \[1, 3\]"):
        PrepareVolumeBatch()({**batch, "depth": torch.tensor([3, 4])})
    with pytest.raises(ValueError, match=r"\(B, C, H, W, D\)"):
        PrepareVolumeBatch()({"image": torch.rand(2, 4, 5, 3), "label": torch.zeros(2, 4, 5, 3)})
