"""Fine-tuning / inference datalists: Decathlon JSON through MONAI's loader with named errors; plain folders."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data.datalist import inference_inputs, segmentation_datalist


def _nifti(path, shape=(8, 8, 4)):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path))
    return str(path)


def test_segmentation_datalist_resolves_paths_and_names_problems(tmp_path):
    _nifti(tmp_path / "imagesTr" / "a.nii.gz")
    _nifti(tmp_path / "labelsTr" / "a.nii.gz")
    entry = {"image": "imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz", "fold": 0}
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [entry, entry], "validation": [{"image": "x"}]}))
    items = segmentation_datalist(str(tmp_path), "training", n_labeled=1)
    assert items == [{"image": str(tmp_path / "imagesTr" / "a.nii.gz"), "label": str(tmp_path / "labelsTr" / "a.nii.gz")}]
    with pytest.raises(KeyError, match=r"dataset.json has no list 'test' \(keys: \['training', 'validation'\]\)"):
        segmentation_datalist(str(tmp_path), "test")
    with pytest.raises(ValueError, match=r"entry 0 of 'validation' must be a dict with 'image' and 'label'"):
        segmentation_datalist(str(tmp_path), "validation")
    with pytest.raises(FileNotFoundError, match="datalist .*other.json not found"):
        segmentation_datalist(str(tmp_path), "training", datalist_file="other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        segmentation_datalist(str(tmp_path), "training", datalist_file="broken.json")
    (tmp_path / "missing.json").write_text(json.dumps({"training": [{"image": "imagesTr/a.nii.gz",
                                                                      "label": "labelsTr/none.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match=r"training\[0\]\['label'\] points to a missing file .*none.nii.gz"):
        segmentation_datalist(str(tmp_path), "training", datalist_file="missing.json")


def test_inference_inputs_lists_the_folder_entries(tmp_path):
    _nifti(tmp_path / "b.nii.gz")
    _nifti(tmp_path / "a.nii")
    _nifti(tmp_path / "nested" / "deeper" / "c.nii.gz")  # not an entry of the folder: not listed
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    (tmp_path / "notes.txt").write_text("x")
    assert inference_inputs(str(tmp_path)) == [{"image": str(tmp_path / n)} for n in ("a.nii", "b.nii.gz", "series")]
    (tmp_path / "dataset.json").write_text(json.dumps({"test": ["b.nii.gz"]}))
    assert inference_inputs(str(tmp_path)) == [{"image": str(tmp_path / "b.nii.gz")}]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="no volumes found in"):
        inference_inputs(str(empty))
