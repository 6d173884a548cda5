"""Head-CT datalists: PhysioNet CT-ICH and SMART-Net layouts as tiny fake NIfTI files, JSON datalists, errors."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from genesis_monai.data.ct_ich import (
    CT_ICH_CSV,
    CT_ICH_TOP_FOLDER,
    ct_ich_datalist,
    find_ct_ich_root,
    head_ct_datalist,
    smart_net_datalist,
)

SHAPE = (8, 8, 3)
CSV_HEADER = ("PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,Epidural,Subdural,"
              "No_Hemorrhage,Fracture_Yes_No")


def _nifti(path, shape=SHAPE, fill=0, dtype=np.int16):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = np.full(shape, fill, dtype=dtype)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return str(path)


def _mask(path, positive, shape=SHAPE):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = np.zeros(shape, np.uint8)
    if positive:
        data[2:4, 3, 1] = 255  # CT-ICH masks may store 255
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return str(path)


def _csv_rows(patient, marks):
    """One row per slice; marks[s] = None (no hemorrhage) or the subtype column index (2..6) set to 1."""
    rows = []
    for s, mark in enumerate(marks, start=1):
        values = [0] * 5
        if mark is not None:
            values[mark - 2] = 1
        rows.append(",".join(map(str, [patient, s, *values, int(mark is None), 0])))
    return rows


@pytest.fixture
def ct_ich(tmp_path):
    """A CT-ICH v1.3.1 tree inside its zip top folder: 049 (IPH in the CSV and mask), 050 (CSV none, mask empty),
    066 (not in the CSV, mask positive)."""
    top = tmp_path / CT_ICH_TOP_FOLDER
    for pid, positive in (("049", True), ("050", False), ("066", True)):
        _nifti(top / "ct_scans" / f"{pid}.nii")
        _mask(top / "masks" / f"{pid}.nii", positive)
    rows = [CSV_HEADER] + _csv_rows(49, [None, 3, 6]) + _csv_rows(50, [None, None, None])
    (top / CT_ICH_CSV).write_text("\n".join(rows) + "\n")
    (top / "Patient_demographics.csv").write_text("Patient Number,Age\n49,30\n")
    return tmp_path, top


def test_ct_ich_entries_from_the_top_folder_or_its_parent(ct_ich):
    parent, top = ct_ich
    expected = [
        {"id": "049", "image": str(top / "ct_scans" / "049.nii"), "label": str(top / "masks" / "049.nii"),
         "hemorrhage": 1, "hemorrhage_kinds": ["intraparenchymal", "subdural"]},
        {"id": "050", "image": str(top / "ct_scans" / "050.nii"), "label": str(top / "masks" / "050.nii"),
         "hemorrhage": 0, "hemorrhage_kinds": []},
        {"id": "066", "image": str(top / "ct_scans" / "066.nii"), "label": str(top / "masks" / "066.nii"),
         "hemorrhage": 1},  # not in the CSV: from the mask's voxels
    ]
    assert ct_ich_datalist(str(top)) == expected
    assert ct_ich_datalist(str(parent)) == expected
    assert head_ct_datalist(str(parent)) == expected
    assert find_ct_ich_root(str(parent)) == str(top)


def test_ct_ich_hemorrhage_from_mask_or_csv(ct_ich):
    _, top = ct_ich
    _mask(top / "masks" / "050.nii", positive=True)  # the CSV says none, the mask disagrees
    assert [e["hemorrhage"] for e in ct_ich_datalist(str(top))] == [1, 0, 1]
    by_mask = ct_ich_datalist(str(top), hemorrhage_from="mask")
    assert [e["hemorrhage"] for e in by_mask] == [1, 1, 1] and "hemorrhage_kinds" not in by_mask[0]
    with pytest.raises(ValueError, match=r"has no rows for scan .*066\.nii"):
        ct_ich_datalist(str(top), hemorrhage_from="csv")
    with pytest.raises(ValueError, match="hemorrhage_from must be"):
        ct_ich_datalist(str(top), hemorrhage_from="labels")


def test_ct_ich_without_csv_uses_the_masks_and_accepts_gzip(tmp_path):
    root = tmp_path / "ich"
    _nifti(root / "ct_scans" / "070.nii.gz")
    _mask(root / "masks" / "070.nii.gz", positive=False)
    assert ct_ich_datalist(str(root)) == [{"id": "070", "image": str(root / "ct_scans" / "070.nii.gz"),
                                           "label": str(root / "masks" / "070.nii.gz"), "hemorrhage": 0}]


def test_ct_ich_errors(ct_ich, tmp_path):
    _, top = ct_ich
    os.remove(top / "masks" / "050.nii")
    with pytest.raises(FileNotFoundError, match=r"scan .*050\.nii has no mask: expected masks/050\.nii"):
        ct_ich_datalist(str(top))
    _mask(top / "masks" / "050.nii", False, shape=(8, 8, 4))
    with pytest.raises(ValueError, match=r"mask .*050\.nii has shape \(8, 8, 4\) but its image .* \(8, 8, 3\)"):
        ct_ich_datalist(str(top))
    _mask(top / "masks" / "050.nii", False)
    _nifti(top / "ct_scans" / "066.nii", shape=(8, 8))
    with pytest.raises(ValueError, match=r"image .*066\.nii has shape \(8, 8\): expected a 3D volume .* 2D image"):
        ct_ich_datalist(str(top))
    _nifti(top / "ct_scans" / "066.nii")
    (top / CT_ICH_CSV).write_text("PatientNumber,SliceNumber,No_Hemorrhage\n49,1,1\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Intraventricular'"):
        ct_ich_datalist(str(top))
    empty = tmp_path / "empty_ich"
    (empty / "ct_scans").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no NIfTI scans"):
        ct_ich_datalist(str(empty))
    with pytest.raises(FileNotFoundError, match="not a CT-ICH folder: expected ct_scans/"):
        ct_ich_datalist(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="CT-ICH folder, which has no splits"):
        head_ct_datalist(str(top), split="training")


# ---- SMART-Net naming -------------------------------------------------------------------------------------
def _pair(folder, name, positive):
    return _nifti(folder / f"{name}_img.nii.gz"), _mask(folder / f"{name}_mask.nii.gz", positive)


def test_smart_net_pairs_matched_by_name(tmp_path):
    folder = tmp_path / "train"
    _pair(folder, "sample2_hemo", True)
    _pair(folder, "1552261447_2_normal", False)
    _pair(folder, "untagged", True)  # neither _hemo_ nor _normal_: from the mask
    _mask(folder / "sample12_hemo_mask_label.nii.gz", True)  # a later upstream file kind: not a pair member
    entries = smart_net_datalist(str(folder))
    assert [(e["id"], e["hemorrhage"]) for e in entries] == [
        ("1552261447_2_normal", 0), ("sample2_hemo", 1), ("untagged", 1)]
    assert entries[1] == {"id": "sample2_hemo", "image": str(folder / "sample2_hemo_img.nii.gz"),
                          "label": str(folder / "sample2_hemo_mask.nii.gz"), "hemorrhage": 1}
    assert head_ct_datalist(str(folder)) == entries


def test_smart_net_split_folders(tmp_path):
    _pair(tmp_path / "train", "a_hemo", True)
    _pair(tmp_path / "train", "b_normal", False)
    _pair(tmp_path / "valid", "c_hemo", True)
    assert [e["id"] for e in head_ct_datalist(str(tmp_path), split="training")] == ["a_hemo", "b_normal"]
    assert [e["id"] for e in head_ct_datalist(str(tmp_path), split="validation")] == ["c_hemo"]
    assert [e["id"] for e in head_ct_datalist(str(tmp_path))] == ["a_hemo", "b_normal", "c_hemo"]
    with pytest.raises(ValueError, match=r"no test sub-folder for split='test'"):
        head_ct_datalist(str(tmp_path), split="test")
    with pytest.raises(ValueError, match=r"no volumes found: .* sub-folders train, valid may"):
        smart_net_datalist(str(tmp_path))
    with pytest.raises(ValueError, match="without split sub-folders"):
        head_ct_datalist(str(tmp_path / "train"), split="training")


def test_smart_net_errors(tmp_path):
    folder = tmp_path / "pairs"
    _pair(folder, "x_hemo", True)
    _nifti(folder / "y_hemo_img.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"image .*y_hemo_img\.nii\.gz has no mask: expected y_hemo_mask"):
        head_ct_datalist(str(folder))
    os.remove(folder / "y_hemo_img.nii.gz")
    _mask(folder / "z_normal_mask.nii.gz", False)
    with pytest.raises(FileNotFoundError, match=r"mask .*z_normal_mask\.nii\.gz has no image: expected z_normal_img"):
        smart_net_datalist(str(folder))
    os.remove(folder / "z_normal_mask.nii.gz")
    _mask(folder / "x_hemo_mask.nii.gz", True, shape=(8, 9, 3))
    with pytest.raises(ValueError, match=r"\(x_hemo\): mask .* has shape \(8, 9, 3\) but its image"):
        smart_net_datalist(str(folder))
    _nifti(folder / "x_hemo_img.nii.gz", shape=(8, 9))
    with pytest.raises(ValueError, match="expected a 3D volume"):
        smart_net_datalist(str(folder))


# ---- JSON datalists and the demo data ------------------------------------------------------------------------
def test_decathlon_json_and_plain_list(tmp_path):
    _nifti(tmp_path / "imagesTr" / "a.nii.gz")
    _mask(tmp_path / "labelsTr" / "a.nii.gz", True)
    _nifti(tmp_path / "imagesTr" / "b.nii.gz")
    _mask(tmp_path / "labelsTr" / "b.nii.gz", False)
    content = {"training": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz", "site": 3}],
               "validation": [{"image": "imagesTr/b.nii.gz", "label": "labelsTr/b.nii.gz", "hemorrhage": 1}]}
    (tmp_path / "dataset.json").write_text(json.dumps(content))
    a = {"id": "a", "image": str(tmp_path / "imagesTr" / "a.nii.gz"), "label": str(tmp_path / "labelsTr" / "a.nii.gz"),
         "hemorrhage": 1, "site": 3}  # hemorrhage from the mask, other fields kept
    b = {"id": "b", "image": str(tmp_path / "imagesTr" / "b.nii.gz"), "label": str(tmp_path / "labelsTr" / "b.nii.gz"),
         "hemorrhage": 1}  # the entry's own value wins
    assert head_ct_datalist(str(tmp_path)) == [a, b]
    assert head_ct_datalist(str(tmp_path / "dataset.json"), split="training") == [a]
    (tmp_path / "list.json").write_text(json.dumps([{"image": "imagesTr/b.nii.gz", "hemorrhage": 0, "id": "scan-b"}]))
    assert head_ct_datalist(str(tmp_path / "list.json")) == [
        {"id": "scan-b", "image": str(tmp_path / "imagesTr" / "b.nii.gz"), "label": None, "hemorrhage": 0}]


def test_json_errors(tmp_path):
    _nifti(tmp_path / "a.nii.gz")
    cases = [
        ({"training": [{"image": "a.nii.gz"}]}, ValueError, "neither 'label' nor 'hemorrhage'"),
        ({"training": [{"image": "a.nii.gz", "hemorrhage": 2}]}, ValueError, "'hemorrhage' must be 0 or 1, got 2"),
        ({"training": [{"label": "a.nii.gz"}]}, ValueError, "must be a dict with an 'image' path"),
        ({"training": [{"image": "gone.nii.gz", "hemorrhage": 0}]}, FileNotFoundError, r"image file .*gone\.nii\.gz"),
        ({"training": [{"image": "a.nii.gz", "label": "gone.nii.gz"}]}, FileNotFoundError, "label file"),
        ({"images": []}, ValueError, r"expected 'training'/'validation'/'test' lists .*keys: \['images'\]"),
        ({"training": []}, ValueError, "no entries"),
    ]
    for content, error, message in cases:
        (tmp_path / "d.json").write_text(json.dumps(content))
        with pytest.raises(error, match=message):
            head_ct_datalist(str(tmp_path / "d.json"))
    (tmp_path / "d.json").write_text(json.dumps({"training": [{"image": "a.nii.gz", "hemorrhage": 0}]}))
    with pytest.raises(KeyError, match="has no list 'test'"):
        head_ct_datalist(str(tmp_path / "d.json"), split="test")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        head_ct_datalist(str(tmp_path / "d.json"))
    (tmp_path / "l.json").write_text(json.dumps([{"image": "a.nii.gz", "hemorrhage": 0}]))
    with pytest.raises(ValueError, match="plain list of entries without splits"):
        head_ct_datalist(str(tmp_path / "l.json"), split="training")


def test_paths_that_are_no_head_ct_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        head_ct_datalist(str(tmp_path / "missing"))
    _nifti(tmp_path / "scan.nii.gz")
    with pytest.raises(ValueError, match="got a file that is not .json"):
        head_ct_datalist(str(tmp_path / "scan.nii.gz"))
    with pytest.raises(ValueError, match=r"no head-CT volumes found: expected a CT-ICH folder"):
        head_ct_datalist(str(tmp_path))
    with pytest.raises(ValueError, match="split must be one of"):
        head_ct_datalist(str(tmp_path), split="train")


def test_the_head_ct_demo_data_set_loads(tmp_path):
    from genesis_monai.data.demo import write_demo_dataset

    out = tmp_path / "demo"
    write_demo_dataset(str(out), phantom="head_ct", n_volumes=3, shape=(48, 48, 12), spacing=(4.2667, 4.2667, 11.667))
    entries = head_ct_datalist(str(out))
    assert [e["id"] for e in entries] == ["head_000", "head_001", "head_002"]
    for entry in entries:  # the datalist's field agrees with the mask on disk
        assert entry["hemorrhage"] == int(np.asanyarray(nib.load(entry["label"]).dataobj).any())
        assert os.path.isabs(entry["image"]) and isinstance(entry["hemorrhage_kinds"], list)
    assert [e["id"] for e in head_ct_datalist(str(out), split="test")] == ["head_002"]


def test_csv_slice_count_mismatch_is_a_warning(ct_ich, caplog):
    _, top = ct_ich
    rows = [CSV_HEADER] + _csv_rows(49, [None, 3]) + _csv_rows(50, [None, None, None])  # 049 has 3 slices
    (top / CT_ICH_CSV).write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="genesis_monai.data.ct_ich"):
        entries = ct_ich_datalist(str(top))
    assert entries[0]["hemorrhage"] == 1
    assert len(caplog.records) == 1 and "2 rows for patient 049 but scan" in caplog.records[0].getMessage()
