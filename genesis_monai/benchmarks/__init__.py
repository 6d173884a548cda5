"""Speed benchmarks that print figures (never assertions): ``python -m genesis_monai benchmark NAME``."""

from __future__ import annotations

import importlib

#: benchmark name -> module with a ``main(**kwargs)`` function
BENCHMARKS = {
    "transforms": "genesis_monai.benchmarks.transforms",
    "cubes": "genesis_monai.benchmarks.cubes",
}


def run_benchmark(name: str, **kwargs):
    """Run benchmark ``name`` (one of BENCHMARKS); extra options go to its ``main``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name]).main(**kwargs)
