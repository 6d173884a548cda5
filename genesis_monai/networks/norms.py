"""Normalisation layers of the Genesis networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that normalises with the current batch statistics in eval mode too.

    Reproduces the reference implementation's ``ContBatchNorm3d`` (Models Genesis, Semantic
    Genesis, TransVW): ``F.batch_norm`` is always called with ``training=True``. Consequences,
    kept on purpose for parity with the published weights:

    - outputs depend on the batch composition at inference (a batch of one is normalised with
      its own statistics over X, Y, Z);
    - ``running_mean``/``running_var`` are updated on every forward (eval included) but never
      used, and ``num_batches_tracked`` stays untouched.

    Parameter and buffer names equal those of ``nn.BatchNorm3d``, so checkpoints are
    interchangeable key for key.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        return F.batch_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps
        )
