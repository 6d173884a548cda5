"""The degradation benchmark runs end to end on a small input and reports sane figures."""

from genesis_monai.benchmarks.transforms import measure


def test_transforms_benchmark_smoke(capsys):
    res = measure(n=2, shape=(32, 32, 16), repeats=1, device="cpu", reference=True)
    out = capsys.readouterr().out
    assert "cubes/s" in out and "speed-up" in out
    assert res["fast_exact_cubes_per_s"] > 0 and res["reference_cubes_per_s"] > 0
    assert res["fast_ms_bezier"] > 0
