"""SMART-Net slice transforms: empty-end-slice cropping, lesion-slice sampling, small-component removal."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose

from genesis_monai.transforms.clahe import CLAHEd
from genesis_monai.transforms.components import RemoveSmallComponents, RemoveSmallComponentsd
from genesis_monai.transforms.slices import (CropEmptyEndSlices, CropEmptyEndSlicesd, RandLesionSlice,
                                             RandLesionSliced, lesion_voxels_per_slice)


def _volume(depth: int = 10, empty=(0, 1, 8, 9), hole: int = 5) -> torch.Tensor:
    """(1, 6, 5, depth) with distinct slice values; the slices in ``empty`` (and ``hole``, inside) are all 0."""
    vol = torch.rand(1, 6, 5, depth, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    for k in (*empty, hole):
        vol[..., k] = 0
    return vol


# --- CropEmptyEndSlices ----------------------------------------------------------------------------------------

def test_crop_removes_both_ends_keeps_inner_empty_slice_and_aligns_label():
    vol = _volume()
    label = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 6, 5, 10).clone()
    out = CropEmptyEndSlicesd(keys=["image", "label"])({"image": vol, "label": label, "other": 1})
    assert out["image"].shape == (1, 6, 5, 6)
    torch.testing.assert_close(out["image"], vol[..., 2:8])
    torch.testing.assert_close(out["label"][0, 0, 0], torch.arange(2.0, 8.0))  # the same slices
    assert out["other"] == 1
    assert torch.all(out["image"][..., 5 - 2] == 0)  # the empty slice inside stays


def test_crop_nothing_to_drop_and_other_axis_and_background():
    vol = torch.rand(1, 4, 4, 5) + 0.1
    torch.testing.assert_close(CropEmptyEndSlices()(vol), vol)
    vol2 = torch.rand(2, 7, 4, 3) + 0.1
    vol2[:, :2] = 0
    vol2[:, -1] = -0.5  # below the background of 0: empty too
    torch.testing.assert_close(CropEmptyEndSlices(axis=1)(vol2), vol2[:, 2:6])
    np.testing.assert_array_equal(CropEmptyEndSlices(axis=-3)(vol2.numpy()), vol2[:, 2:6].numpy())
    # a slice is empty only when every channel is: channel 1 alone keeps slice 0
    vol3 = torch.rand(2, 3, 3, 4) + 0.1
    vol3[0, ..., 0] = 0
    assert CropEmptyEndSlices()(vol3).shape[-1] == 4
    vol3[1, ..., 0] = 0
    assert CropEmptyEndSlices()(vol3).shape[-1] == 3


def test_crop_metatensor_updates_affine_and_keeps_meta():
    affine = torch.diag(torch.tensor([0.5, 0.5, 5.0, 1.0], dtype=torch.float64))
    img = MetaTensor(_volume(), affine=affine, meta={"filename_or_obj": "ct_001.nii.gz"})
    out = CropEmptyEndSlices()(img)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "ct_001.nii.gz"
    assert float(out.affine[2, 3]) == pytest.approx(2 * 5.0)  # origin moved to the first kept slice


def test_crop_all_empty_raises_with_key_and_file():
    img = MetaTensor(torch.zeros(1, 4, 4, 6), meta={"filename_or_obj": "/data/empty_scan.nii.gz"})
    with pytest.raises(ValueError, match=r"key 'image' \(file /data/empty_scan.nii.gz\).*every slice"):
        CropEmptyEndSlicesd(keys=["image", "label"])({"image": img, "label": torch.zeros(1, 4, 4, 6)})
    with pytest.raises(ValueError, match="empty_scan.nii.gz"):
        CropEmptyEndSlices()(img)


def test_crop_errors_for_bad_keys_and_axes():
    with pytest.raises(KeyError, match="source_key 'image'"):
        CropEmptyEndSlicesd(keys="label")({"label": torch.ones(1, 2, 2, 2)})
    with pytest.raises(ValueError, match=r"key 'label'.*does not match"):
        CropEmptyEndSlicesd(keys=["image", "label"])({"image": torch.ones(1, 2, 2, 4), "label": torch.ones(1, 2, 2, 3)})
    with pytest.raises(ValueError, match="spatial axis"):
        CropEmptyEndSlices(axis=0)(torch.ones(1, 2, 2, 2))


# --- RandLesionSlice -------------------------------------------------------------------------------------------

def _lesion_case(depth: int = 12, lesion=None):
    """Image with slice k filled with k / depth; label with ``lesion[k]`` foreground voxels on slice k."""
    img = (torch.arange(depth, dtype=torch.float32) / depth).view(1, 1, 1, depth).expand(1, 10, 10, depth).clone()
    label = torch.zeros(1, 10, 10, depth)
    for k, n in (lesion or {}).items():
        label.view(1, 100, depth)[0, :n, k] = 1
    return {"image": img, "label": label}


def test_lesion_slice_chosen_every_time_with_matching_image_and_label():
    data = _lesion_case(lesion={3: 1, 7: 2})
    for seed in range(200):
        out = RandLesionSliced(keys="image").set_random_state(seed)(data)
        k = out["slice_index"]
        assert k in (3, 7)
        assert out["image"].shape == (1, 10, 10) and out["label"].shape == (1, 10, 10)
        torch.testing.assert_close(out["image"], data["image"][..., k])
        torch.testing.assert_close(out["label"], data["label"][..., k])
        assert out["has_lesion"].dtype == torch.float32 and out["has_lesion"].tolist() == [1.0]


def test_slice_frequencies_follow_foreground_voxels():
    data = _lesion_case(lesion={2: 10, 5: 30, 9: 60})
    n = 4000
    outs = RandLesionSliced(keys=["image", "label"], num_samples=n).set_random_state(1)(data)
    idx = np.array([o["slice_index"] for o in outs])
    assert set(idx) <= {2, 5, 9}
    for k, p in ((2, 0.1), (5, 0.3), (9, 0.6)):
        assert abs(np.mean(idx == k) - p) < 0.03  # ~4 standard errors at worst


def test_uniform_without_lesion():
    data = _lesion_case(depth=8)
    n = 4000
    outs = RandLesionSliced(keys="image", num_samples=n).set_random_state(2)(data)
    idx = np.array([o["slice_index"] for o in outs])
    freq = np.bincount(idx, minlength=8) / n
    assert np.all(np.abs(freq - 1 / 8) < 0.03)
    assert all(o["has_lesion"].item() == 0.0 for o in outs[:50])
    # no label at all: uniform as well
    outs = RandLesionSliced(keys="image", label_key=None, num_samples=n).set_random_state(2)({"image": data["image"]})
    assert np.all(np.abs(np.bincount([o["slice_index"] for o in outs], minlength=8) / n - 1 / 8) < 0.03)


def test_sampling_is_deterministic_by_seed_and_varies_between_seeds():
    data = _lesion_case(lesion={k: k + 1 for k in range(12)})
    draw = lambda seed: [o["slice_index"] for o in RandLesionSliced("image", num_samples=20).set_random_state(seed)(data)]
    assert draw(5) == draw(5)
    assert draw(5) != draw(6)
    t = RandLesionSliced("image").set_random_state(3)
    first = [t(data)["slice_index"] for _ in range(10)]
    t.set_random_state(3)
    assert [t(data)["slice_index"] for _ in range(10)] == first


def test_num_samples_list_collates_with_has_lesion_like_logits():
    data = _lesion_case(lesion={4: 5})
    outs = RandLesionSliced(keys="image", num_samples=3).set_random_state(0)(data)
    assert isinstance(outs, list) and len(outs) == 3
    batch = list_data_collate(outs)
    assert batch["image"].shape == (3, 1, 10, 10) and batch["has_lesion"].shape == (3, 1)
    # Compose maps the next transform over the list of samples
    pipeline = Compose([RandLesionSliced(keys="image", num_samples=2), CLAHEd(keys="image", tile_grid=(2, 2))])
    pipeline.set_random_state(0)
    outs = pipeline(data)
    assert len(outs) == 2 and outs[0]["image"].shape == (1, 10, 10)


def test_multichannel_label_counts_any_channel_and_metatensor_slice():
    data = _lesion_case(depth=6)
    label = torch.zeros(2, 10, 10, 6)
    label[1, 0, 0, 4] = 1  # foreground only in the second channel
    np.testing.assert_array_equal(lesion_voxels_per_slice(label), [0, 0, 0, 0, 1, 0])
    img = MetaTensor(data["image"], affine=torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])),
                     meta={"filename_or_obj": "scan.nii.gz"})
    out = RandLesionSliced(keys="image").set_random_state(0)({"image": img, "label": label})
    assert out["slice_index"] == 4 and out["has_lesion"].item() == 1.0
    assert isinstance(out["image"], MetaTensor) and out["image"].meta["filename_or_obj"] == "scan.nii.gz"
    assert out["image"].affine.shape == (3, 3)  # a 2-D slice's affine
    torch.testing.assert_close(out["image"].as_tensor(), data["image"][..., 4])


def test_array_transform_cuts_the_same_slice_from_the_label():
    data = _lesion_case(lesion={6: 3})
    t = RandLesionSlice().set_random_state(0)
    img_slice = t(data["image"], data["label"])
    lab_slice = t(data["label"], randomize=False)
    assert t.slice_indices.tolist() == [6] and t.slice_has_lesion.tolist() == [True]
    torch.testing.assert_close(img_slice, data["image"][..., 6])
    assert lab_slice.sum() == 3
    sliced = t(data["image"].numpy(), data["label"].numpy())
    assert isinstance(sliced, np.ndarray) and sliced.shape == (1, 10, 10)
    sliced[:] = 5  # a copy: the volume is untouched
    assert data["image"].max() < 1


def test_lesion_slice_errors():
    data = _lesion_case()
    with pytest.raises(KeyError, match="label_key 'label'"):
        RandLesionSliced(keys="image")({"image": data["image"]})
    bad = MetaTensor(torch.zeros(1, 10, 10, 5), meta={"filename_or_obj": "short.nii.gz"})
    with pytest.raises(ValueError, match=r"key 'image' \(file short.nii.gz\).*depth 5.*12"):
        RandLesionSliced(keys="image")({"image": bad, "label": data["label"]})
    with pytest.raises(ValueError, match=r"\(C, H, W, D\)"):
        RandLesionSliced(keys="image")({"image": torch.zeros(1, 10, 10), "label": torch.zeros(1, 10, 10)})
    with pytest.raises(ValueError, match="num_samples"):
        RandLesionSliced(keys="image", num_samples=0)
    with pytest.raises(ValueError, match="randomize"):
        RandLesionSlice()(data["image"], randomize=False)


# --- RemoveSmallComponents -------------------------------------------------------------------------------------

def _bfs_reference(mask: np.ndarray, min_size: int, full: bool) -> np.ndarray:
    """Plain flood fill per channel: 4/6-neighbours, or all 8/26 with ``full``."""
    keep = np.zeros(mask.shape, dtype=bool)
    seen = np.zeros(mask.shape, dtype=bool)
    spatial = mask.shape[1:]
    offsets = [o for o in np.ndindex(*(3,) * len(spatial)) if any(v != 1 for v in o)]
    offsets = [tuple(v - 1 for v in o) for o in offsets]
    if not full:
        offsets = [o for o in offsets if sum(abs(v) for v in o) == 1]
    for c in range(mask.shape[0]):
        for start in np.ndindex(*spatial):
            if mask[(c, *start)] <= 0 or seen[(c, *start)]:
                continue
            component, queue = [], deque([start])
            seen[(c, *start)] = True
            while queue:
                p = queue.popleft()
                component.append(p)
                for o in offsets:
                    q = tuple(a + b for a, b in zip(p, o))
                    if all(0 <= a < s for a, s in zip(q, spatial)) and mask[(c, *q)] > 0 and not seen[(c, *q)]:
                        seen[(c, *q)] = True
                        queue.append(q)
            if len(component) >= min_size:
                for p in component:
                    keep[(c, *p)] = True
    return np.where(keep, mask, 0)


def test_sizes_at_the_threshold():
    m = np.zeros((1, 9, 9), dtype=np.uint8)
    m[0, 0, 0] = 1  # size 1
    m[0, 0, 4:6] = 1  # size 2
    m[0, 4, 0:3] = 1  # size 3: kept exactly at min_size
    m[0, 8, 4:8] = 1  # size 4
    out = RemoveSmallComponents(min_size=3)(m)
    assert out.dtype == np.uint8
    expected = np.zeros_like(m)
    expected[0, 4, 0:3] = 1
    expected[0, 8, 4:8] = 1
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(RemoveSmallComponents(min_size=4)(m).sum(), 4)
    np.testing.assert_array_equal(RemoveSmallComponents(min_size=1)(m), m)


def test_connectivity_one_versus_two():
    diag = np.zeros((1, 5, 5), dtype=np.float32)
    diag[0, [0, 1, 2], [0, 1, 2]] = 1  # three pixels touching at corners
    assert RemoveSmallComponents(3, connectivity=2)(diag).sum() == 3  # one 8-connected component of 3
    assert RemoveSmallComponents(3, connectivity=1)(diag).sum() == 0  # three singletons
    vol = np.zeros((1, 4, 4, 4), dtype=np.float32)
    vol[0, 0, 0, 0] = vol[0, 1, 1, 0] = vol[0, 2, 2, 1] = 1  # edge neighbours, then a corner neighbour
    assert RemoveSmallComponents(3, connectivity=3)(vol).sum() == 3
    assert RemoveSmallComponents(2, connectivity=2)(vol).sum() == 2  # the corner step is not 18-connected
    assert RemoveSmallComponents(2, connectivity=1)(vol).sum() == 0
    assert RemoveSmallComponents(3, connectivity=None)(vol).sum() == 3  # None: full


def test_matches_flood_fill_reference_on_random_masks():
    rng = np.random.default_rng(0)
    for shape, conn, full in (((2, 12, 11), 2, True), ((2, 12, 11), 1, False), ((1, 7, 6, 5), 3, True),
                              ((1, 7, 6, 5), 1, False)):
        mask = (rng.random(shape) < 0.3).astype(np.int64) * rng.integers(1, 3, shape)  # label values 1 and 2
        np.testing.assert_array_equal(RemoveSmallComponents(3, conn)(mask), _bfs_reference(mask, 3, full))


def test_channels_are_separate_and_kind_meta_device_kept():
    m = torch.zeros(2, 4, 4)
    m[0, 0, 0:2] = 1
    m[1, 1, 0:2] = 1  # adjacent to channel 0's pixels only across the channel axis
    assert RemoveSmallComponents(3)(m).sum() == 0
    meta = MetaTensor(torch.ones(1, 4, 4, dtype=torch.uint8), meta={"filename_or_obj": "mask.nii.gz"})
    out = RemoveSmallComponentsd(keys="label")({"label": meta})["label"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.uint8 and out.meta["filename_or_obj"] == "mask.nii.gz"
    assert torch.equal(out.as_tensor(), torch.ones(1, 4, 4, dtype=torch.uint8))
    boolean = np.zeros((1, 3, 3), dtype=bool)
    boolean[0, 1, 1] = True
    out = RemoveSmallComponents()(boolean)
    assert out.dtype == bool and not out.any()


def test_component_errors():
    with pytest.raises(ValueError, match=r"key 'label'.*\(C, H, W\)"):
        RemoveSmallComponentsd(keys="label")({"label": np.ones((4, 4))})
    with pytest.raises(ValueError, match="connectivity must be in 1..2"):
        RemoveSmallComponents(connectivity=3)(np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="min_size"):
        RemoveSmallComponents(min_size=-1)
