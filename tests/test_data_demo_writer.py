"""The demo writer is not tied to the chest CT: a toy phantom (2-D, unlabeled) plugs in through Phantom."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data.demo import CHEST_CT, HEAD_CT, PHANTOMS, Phantom, write_demo_dataset
from genesis_monai.data.demo.checks import check_shape, check_spacing


def _make_toy(index, shape, spacing, seed):
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    return rng.integers(0, 255, size=shape, dtype=np.uint8), None


def _toy_affine(shape, spacing):
    return np.diag([*spacing, 1.0, 1.0])


TOY = Phantom(
    name="toy_xray", generator="tests.toy_xray", version=3, make=_make_toy, affine=_toy_affine,
    min_shape=(8, 8), default_shape=(16, 12), default_spacing=(0.5, 0.5), default_n_volumes=4,
    title="toy X-ray", description="noise", modality={"0": "XR"}, labels=None,
    axes="X right, Y up", file_prefix="toy",
)


def _tree(folder):
    return {os.path.relpath(os.path.join(r, f), folder): os.stat(os.path.join(r, f)).st_mtime_ns
            for r, _, fs in os.walk(folder) for f in fs}


def test_a_2d_unlabeled_phantom_is_written_like_the_chest_ct(tmp_path):
    out = str(tmp_path / "toy")
    path = write_demo_dataset(out, phantom=TOY)
    content = json.load(open(path))
    assert content["tensorImageSize"] == "2D" and content["modality"] == {"0": "XR"} and "labels" not in content
    assert content["training"] == [{"image": "imagesTr/toy_000.nii.gz"}, {"image": "imagesTr/toy_001.nii.gz"}]
    assert content["genesis_demo"]["generator"] == "tests.toy_xray"
    assert content["genesis_demo"]["params"] == {"version": 3, "n_volumes": 4, "shape": [16, 12],
                                                 "spacing": [0.5, 0.5], "seed": 0}
    assert not os.path.exists(os.path.join(out, "labelsTr"))
    img = nib.load(os.path.join(out, "imagesTr", "toy_003.nii.gz"))
    assert img.shape == (16, 12)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), _make_toy(3, (16, 12), (0.5, 0.5), 0)[0])
    # resumable and idempotent, as for the chest CT
    before = _tree(out)
    write_demo_dataset(out, phantom=TOY)
    assert _tree(out) == before
    os.remove(os.path.join(out, "dataset.json"))
    os.remove(os.path.join(out, "imagesTr", "toy_001.nii.gz"))
    write_demo_dataset(out, phantom=TOY)
    after = _tree(out)
    assert after["imagesTr/toy_000.nii.gz"] == before["imagesTr/toy_000.nii.gz"] and "dataset.json" in after


def test_phantoms_do_not_replace_each_others_data_sets(tmp_path):
    out = str(tmp_path / "toy")
    write_demo_dataset(out, phantom=TOY)
    with pytest.raises(FileExistsError, match="not written by the chest_ct demo generator"):
        write_demo_dataset(out, n_volumes=3, shape=(64, 64, 32), spacing=(5.0, 5.0, 10.0))
    with pytest.raises(ValueError, match=r"unknown phantom 'knee_mri'; choose one of \['chest_ct', 'head_ct'\]"):
        write_demo_dataset(out, phantom="knee_mri")
    with pytest.raises(FileExistsError, match="not written by the head_ct demo generator"):
        write_demo_dataset(out, phantom="head_ct")
    with pytest.raises(ValueError, match=r"shape must be 2 integers \(X, Y\) with X >= 8, Y >= 8"):
        write_demo_dataset(out, phantom=TOY, shape=(16, 4))
    assert PHANTOMS == {"chest_ct": CHEST_CT, "head_ct": HEAD_CT}


def test_argument_checks():
    assert check_shape((64, 64, 32.0), (32, 32, 16)) == (64, 64, 32)
    assert check_spacing([1, 2], ndim=2) == (1.0, 2.0)
    for bad in ((64, 64), (64, 64, 32.5), "abc", (16, 64, 32)):
        with pytest.raises(ValueError, match="shape must be 3 integers"):
            check_shape(bad, (32, 32, 16))
    with pytest.raises(ValueError, match=r"spacing must be 2 positive numbers \(mm along X, Y\)"):
        check_spacing((1.0, 0.0), ndim=2)
