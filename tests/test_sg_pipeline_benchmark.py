"""The Semantic Genesis input-pipeline benchmark runs end to end on a small input and reports its fields."""

import numpy as np

from genesis_monai.benchmarks.sg_pipeline import measure, reference_sample
from genesis_monai.transforms import elastic_kernel


def test_sg_pipeline_benchmark_smoke(capsys):
    res = measure(batch_size=2, n_batches=1, shape=(32, 32, 16), reference_samples=2, torch_batches=1)
    out = capsys.readouterr().out
    assert "samples/s" in out and "speed-up" in out and "reference-style per-sample loader" in out
    assert "elastic kernel: " in out and "degradation kernel: " in out
    for key in ("samples_per_s", "fast_pipeline_samples_per_s", "fast_elastic_ms_per_batch", "fast_degrade_ms_per_batch",
                "reference_samples_per_s", "reference_elastic_ms_per_sample", "reference_degrade_ms_per_sample",
                "speedup", "speedup_fast_elastic", "speedup_fast_degrade"):
        assert res[key] > 0, key
    assert res["speedup"] == res["fast_pipeline_samples_per_s"] / res["reference_samples_per_s"]
    if elastic_kernel.available():
        assert "elastic kernel=c" in out and res["torch_elastic_ms_per_batch"] > 0
        assert "speedup_torch_pipeline" in res


def test_reference_sample_shapes():
    cube = np.random.default_rng(0).random((1, 32, 32, 16)).astype(np.float32)
    for _ in range(8):  # all four degradations get drawn now and then
        degraded, target = reference_sample(cube)
        assert degraded.shape == cube.shape and target is cube
        assert 0.0 <= float(degraded.min()) and float(degraded.max()) <= 1.0
