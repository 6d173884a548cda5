"""Transfer on your own data: ``python -m genesis_monai benchmark transfer --dataset_dir DIR [--unlabeled_dir DIR2]``.

Unlike the speed benchmarks next to it, this one trains: it runs the pretrained-vs-scratch comparison of
:func:`genesis_monai.transfer.cli.run_benchmark` (options there; ``--help`` lists them) and prints its table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def main(**options: Any) -> None:
    """Run :func:`genesis_monai.transfer.cli.run_benchmark` with ``options`` (``--help``: its options); the
    summary is in ``results.json``."""
    from genesis_monai.transfer.cli import benchmark_cli

    if options.get("help") or options.get("h"):
        return benchmark_cli(**options)
    if "dataset_dir" not in options:
        raise ValueError("benchmark transfer needs --dataset_dir DIR (a folder with a Decathlon-style dataset.json); "
                         "options: python -c 'from genesis_monai.transfer.cli import run_benchmark; "
                         "help(run_benchmark)'")
    benchmark_cli(**options)
