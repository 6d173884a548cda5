"""Inference segments every readable file when some are not (issue 10, row 8), for every bundle."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from bundle_utils import BUNDLES_DIR, cpu_overrides, run_workflow, workflow, write_tiny_segmentation_set
from genesis_monai.error_summary import exception_chain

BUNDLES = sorted(d for d in os.listdir(BUNDLES_DIR)
                 if os.path.isfile(os.path.join(BUNDLES_DIR, d, "configs", "inference.json")))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    data = write_tiny_segmentation_set(str(root / "data"), n=2, shape=(16, 16, 16))
    folder = root / "inputs"
    folder.mkdir()
    for i in range(2):
        shutil.copy(os.path.join(data, "imagesTr", f"case_{i}.nii.gz"), folder / f"case_{i}.nii.gz")
    (folder / "a_corrupt.nii.gz").write_bytes(b"not a volume")  # sorted first
    bad = root / "all_bad"
    bad.mkdir()
    (bad / "x.nii.gz").write_bytes(b"nope")
    return {"root": root, "folder": str(folder), "bad": str(bad)}


def _infer(bundle, inputs, input_dir, out):
    from genesis_monai.bundles import bundle_network_def

    ckpt = inputs["root"] / f"models_{bundle}"
    ckpt.mkdir(exist_ok=True)
    overrides = {"use_demo_caps": False, "network_width": 0.25}
    torch.manual_seed(0)
    net = bundle_network_def(os.path.join(BUNDLES_DIR, bundle), "inference.json", overrides)
    torch.save(net.state_dict(), ckpt / "model.pt")
    return workflow(bundle, ["inference.json"], "infer", **cpu_overrides(
        dataset_dir=input_dir, ckpt_dir=str(ckpt), output_dir=str(out), patch_size=[16, 16, 16], **overrides))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_unreadable_file_is_skipped_and_listed(bundle, inputs, tmp_path, caplog):
    out = tmp_path / "masks"
    with caplog.at_level("WARNING"):
        run_workflow(_infer(bundle, inputs, inputs["folder"], out))
    written = sorted(p.name for p in out.iterdir() if p.name.endswith(".nii.gz"))
    assert len(written) == 2 and all("case_" in n for n in written), written
    corrupt = os.path.join(inputs["folder"], "a_corrupt.nii.gz")
    skip_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"skipped {corrupt}")]
    assert len(skip_lines) == 1 and "\n" not in skip_lines[0], "one line per skipped file"
    assert "Traceback" not in caplog.text
    assert any("segmented 2 of 3" in r.getMessage() and corrupt in r.getMessage() for r in caplog.records)
    report = json.loads((out / "inference_report.json").read_text())
    assert list(report["skipped"]) == [corrupt] and len(report["segmented"]) == 2


@pytest.mark.parametrize("bundle", BUNDLES)
def test_nothing_segmented_is_an_error(bundle, inputs, tmp_path):
    with pytest.raises(Exception) as info:
        run_workflow(_infer(bundle, inputs, inputs["bad"], tmp_path / "masks"))
    reason = exception_chain(info.value)[-1]
    assert "no volume was segmented" in str(reason) and "1 input(s)" in str(reason)
