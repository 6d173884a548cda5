"""The degradation benchmark runs end to end on a small input and reports sane figures."""

from genesis_monai.benchmarks.transforms import measure
from genesis_monai.transforms import cpu_kernel


def test_transforms_benchmark_smoke(capsys):
    res = measure(n=2, shape=(32, 32, 16), repeats=1, device="cpu", reference=True)
    out = capsys.readouterr().out
    assert "cubes/s" in out and "speed-up" in out
    assert "kernel='auto' runs: " in out  # the figures say which kernel the default operator used
    assert res["fast_exact_cubes_per_s"] > 0 and res["reference_cubes_per_s"] > 0
    assert res["fast_ms_bezier (torch)"] > 0 and res["fast_torch_pool_cubes_per_s"] > 0
    if cpu_kernel.available():
        assert "kernel=c" in out and res["fast_ms_local shuffle (c, exact)"] > 0
        assert res["speedup_exact"] == res["fast_exact_cubes_per_s"] / res["reference_cubes_per_s"]
