"""Glue for MONAI/Ignite workflows: on-device degradation, monitors, provenance, scores."""

from genesis_monai.engines.prepare_batch import PrepareDegradedBatch
from genesis_monai.engines.provenance import Provenance
from genesis_monai.engines.restoration_monitor import CollapseDetector, RestorationSampleSaver, output_tensors
from genesis_monai.engines.scores import lower_is_better, metric_lower_is_better

__all__ = [
    "PrepareDegradedBatch",
    "CollapseDetector",
    "RestorationSampleSaver",
    "Provenance",
    "output_tensors",
    "lower_is_better",
    "metric_lower_is_better",
]

from genesis_monai.engines.checkpoints import latest_checkpoint  # noqa: E402

__all__ += ["latest_checkpoint"]

from genesis_monai.engines.budget import EpochTimeBudget  # noqa: E402

__all__ += ["EpochTimeBudget"]
