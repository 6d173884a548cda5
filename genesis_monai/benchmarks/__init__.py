"""Benchmarks that print figures (never assertions): ``python -m genesis_monai benchmark NAME``.

``transforms``, ``cubes`` and ``semantic-genesis`` measure speed against reference-style baselines; ``transfer`` measures what
pretraining buys on your own data set (pretrained vs scratch fine-tuning, held-out test Dice).
"""

from __future__ import annotations

import importlib

#: benchmark name -> module with a ``main(**kwargs)`` function
BENCHMARKS = {
    "transforms": "genesis_monai.benchmarks.transforms",
    "cubes": "genesis_monai.benchmarks.cubes",
    "transfer": "genesis_monai.benchmarks.transfer",
    "semantic-genesis": "genesis_monai.benchmarks.semantic_genesis",
}


def run_benchmark(name: str, **kwargs):
    """Run benchmark ``name`` (one of BENCHMARKS); extra options go to its ``main``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name]).main(**kwargs)
