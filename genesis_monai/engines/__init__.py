"""Glue for MONAI/Ignite workflows: on-device degradation, output selection, monitors, provenance, budgets."""

from genesis_monai.engines.budget import EpochTimeBudget
from genesis_monai.engines.inference_report import InferenceReport
from genesis_monai.engines.loss_terms import LossTermsHandler
from genesis_monai.engines.multi_target_batch import PrepareTargetsBatch
from genesis_monai.engines.multitask_samples import MultiTaskSampleSaver
from genesis_monai.engines.output_guard import previous_name, protect_finished_outputs
from genesis_monai.engines.outputs import (OutputKey, output_tensors, pred_target_transform, scalars_transform,
                                           select_output)
from genesis_monai.engines.prepare_batch import RESTORATION_TARGET, PrepareDegradedBatch, PrepareReconstructionBatch
from genesis_monai.engines.provenance import Provenance
from genesis_monai.engines.resume import ResumeCheckpoint, TrainingProgress, resume_available
from genesis_monai.engines.restoration_monitor import CollapseDetector, RestorationSampleSaver
from genesis_monai.engines.run_settings import log_demo_caps
from genesis_monai.engines.lr_schedules import WarmupLinearDecay, warmup_linear_decay
from genesis_monai.engines.unfreezing import SMART_NET_UNFREEZING, GradualUnfreezing
from genesis_monai.engines.volume_metrics import FalsePositiveVolume, VolumeClassificationMetrics, binary_volume_metrics

__all__ = [
    "PrepareDegradedBatch",
    "PrepareReconstructionBatch",
    "RESTORATION_TARGET",
    "CollapseDetector",
    "RestorationSampleSaver",
    "LossTermsHandler",
    "Provenance",
    "OutputKey",
    "select_output",
    "output_tensors",
    "pred_target_transform",
    "scalars_transform",
    "EpochTimeBudget",
    "log_demo_caps",
    "InferenceReport",
    "protect_finished_outputs",
    "previous_name",
    "ResumeCheckpoint",
    "TrainingProgress",
    "resume_available",
    "GradualUnfreezing",
    "SMART_NET_UNFREEZING",
    "warmup_linear_decay",
    "WarmupLinearDecay",
    "FalsePositiveVolume",
    "VolumeClassificationMetrics",
    "binary_volume_metrics",
    "PrepareTargetsBatch",
    "MultiTaskSampleSaver",
]
