"""The transfer comparison: what pretraining buys, measured on held-out volumes.

``python -m genesis_monai demo`` (procedural demo data) and ``python -m genesis_monai benchmark transfer``
(your Decathlon-style data set) pretrain a bundle's network on many unlabeled volumes, fine-tune it on
a few labeled ones from the pretrained weights and from scratch (same seeds, same budget), pick each
run's checkpoint on validation volumes and score held-out test volumes that neither stage saw.

Modules, one job each:

* :mod:`~genesis_monai.transfer.plan`: :class:`TransferPlan`, the ``demo`` / ``paper`` presets (read from
  the bundle configs) and the budget split;
* :mod:`~genesis_monai.transfer.splits`: which volume plays which role, enforced, and the folders the
  stages read;
* :mod:`~genesis_monai.transfer.stages`: cube extraction, pretraining, fine-tuning, test inference, each
  a bundle config run with checked overrides;
* :mod:`~genesis_monai.transfer.run`: the order of the stages and ``results.json``;
* :mod:`~genesis_monai.transfer.report`: statistics over seeds, the table, the pictures;
* :mod:`~genesis_monai.transfer.progress`: one line per stage;
* :mod:`~genesis_monai.transfer.cli`: the two command lines.
"""

from genesis_monai.transfer.plan import PRESETS, TransferPlan, make_plan  # noqa: F401

__all__ = ["TransferPlan", "PRESETS", "make_plan", "run_demo", "run_benchmark"]


def __getattr__(name: str):
    # the command lines import MONAI and torch: loaded when used, not when the package is imported
    if name in ("run_demo", "run_benchmark", "demo_cli", "benchmark_cli"):
        from genesis_monai.transfer import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
