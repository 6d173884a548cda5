"""Volume-level metrics for SMART-Net's downstream tasks: classification scores and false-positive volume.

Decisions are ``probability > threshold`` (strictly greater): the reference rounds sigmoid outputs, and
``round(0.5)`` is 0.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import EpochMetric, Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.data import MetaTensor
from monai.metrics import compute_confusion_matrix_metric, compute_roc_auc, get_confusion_matrix

__all__ = ["binary_volume_metrics", "VolumeClassificationMetrics", "FalsePositiveVolume", "BINARY_VOLUME_METRICS"]

logger = logging.getLogger(__name__)

#: the keys of :func:`binary_volume_metrics`' result
BINARY_VOLUME_METRICS = ("auc", "f1", "sensitivity", "specificity", "accuracy")


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """A plain tensor (no meta data) from a tensor, MetaTensor, array, number or list of them."""
    if isinstance(value, (list, tuple)):
        value = torch.stack([_as_tensor(v, what) for v in value]) if value else torch.zeros(0)
    if isinstance(value, MetaTensor):
        value = value.as_tensor()
    value = torch.as_tensor(value)
    if not (value.is_floating_point() or value.dtype in (torch.bool, torch.uint8, torch.int32, torch.int64)):
        raise TypeError(f"{what} must be numeric, got dtype {value.dtype}")
    return value


def binary_volume_metrics(probs: Any, labels: Any, threshold: float = 0.5) -> Dict[str, float]:
    """AUC, F1, sensitivity, specificity and accuracy of volume-level binary predictions.

    Args:
        probs: probabilities in [0, 1], shape (N,) or (N, 1) (apply the sigmoid to logits first).
        labels: ground truth in {0, 1}, same number of elements.
        threshold: a volume is predicted positive when ``prob > threshold``.

    Returns:
        ``{"auc", "f1", "sensitivity", "specificity", "accuracy"}`` as floats, computed with MONAI's
        ``compute_roc_auc`` / ``get_confusion_matrix``. A metric that is undefined for the data (all
        volumes of one class: AUC and sensitivity or specificity; F1 without positives in labels and
        predictions) is ``nan``, with a WARNING naming it, instead of an exception.
    """
    probs = _as_tensor(probs, "binary_volume_metrics: probs").detach().double().reshape(-1)
    labels = _as_tensor(labels, "binary_volume_metrics: labels").detach().double().reshape(-1).to(probs.device)
    if probs.numel() == 0:
        raise ValueError("binary_volume_metrics: no volumes (probs is empty)")
    if probs.numel() != labels.numel():
        raise ValueError(f"binary_volume_metrics: {probs.numel()} probabilities but {labels.numel()} labels")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"binary_volume_metrics: labels must be 0 or 1, got values {labels.unique()[:5].tolist()}")
    if not bool(torch.isfinite(probs).all()) or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"binary_volume_metrics: probs must be probabilities in [0, 1] (got range "
                         f"[{probs.min().item():.3g}, {probs.max().item():.3g}]); apply a sigmoid to logits")
    with warnings.catch_warnings():
        # MONAI warns and returns nan for one-class data; we say it once, in our own words, below
        warnings.simplefilter("ignore")
        auc = float(compute_roc_auc(probs, labels))
    predicted = (probs > threshold).double()
    confusion = get_confusion_matrix(predicted[:, None], labels[:, None]).sum(dim=0)  # (1, 4): tp, fp, tn, fn
    result = {"auc": auc}
    for key, name in (("f1", "f1 score"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                      ("accuracy", "accuracy")):
        result[key] = float(compute_confusion_matrix_metric(name, confusion).reshape(-1)[0])
    n_pos, n_neg = int(labels.sum().item()), int(labels.numel() - labels.sum().item())
    notes = []
    if n_pos == 0:
        notes.append("no positive volumes: auc and sensitivity are undefined")
    if n_neg == 0:
        notes.append("no negative volumes: auc and specificity are undefined")
    if math.isnan(result["f1"]):
        notes.append("no positive volumes and no positive predictions: f1 is undefined")
    if notes:
        logger.warning("binary_volume_metrics (%d volumes, %d positive): %s; reported as nan", labels.numel(), n_pos,
                       "; ".join(notes))
    return {k: result[k] for k in BINARY_VOLUME_METRICS}


class VolumeClassificationMetrics(EpochMetric):
    """Ignite metric: :func:`binary_volume_metrics` over a whole evaluation run.

    ``output_transform`` gives ``(y_pred, y)`` (MONAI evaluators: ``monai.handlers.from_engine(["pred", "label"])``)
    with ``y_pred`` (B,) or (B, 1) probabilities, or logits with ``sigmoid=True``, and ``y`` (B,) or (B, 1) in {0, 1};
    decollated lists of per-volume tensors are accepted too. At the end of the run
    ``engine.state.metrics[name]`` is the ``key`` metric (a float, so it can be a MONAI key metric) and
    ``engine.state.metrics[f"{name}_{metric}"]`` holds each of :data:`BINARY_VOLUME_METRICS`.
    Under DDP the predictions of all ranks are gathered and every rank computes the same result.

    Args:
        threshold: decision threshold on the probability (``prob > threshold``).
        sigmoid: ``y_pred`` are logits.
        key: which metric is the engine's value under ``name``.
        output_transform: Ignite output transform.
        device: where predictions are accumulated.
    """

    def __init__(self, threshold: float = 0.5, sigmoid: bool = False, key: str = "auc",
                 output_transform: Callable = lambda x: x, device: Union[str, torch.device] = "cpu") -> None:
        if key not in BINARY_VOLUME_METRICS:
            raise ValueError(f"VolumeClassificationMetrics: key must be one of {BINARY_VOLUME_METRICS}, got {key!r}")
        self.threshold = float(threshold)
        self.sigmoid = bool(sigmoid)
        self.key = key
        super().__init__(self._compute, output_transform=output_transform, check_compute_fn=False, device=device)

    def _compute(self, y_pred: torch.Tensor, y: torch.Tensor) -> Dict[str, float]:
        probs = torch.sigmoid(y_pred.float()) if self.sigmoid else y_pred
        return binary_volume_metrics(probs, y, threshold=self.threshold)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = output[0], output[1]
        y_pred = _as_tensor(y_pred, "VolumeClassificationMetrics: y_pred").float()
        y = _as_tensor(y, "VolumeClassificationMetrics: y").float()
        if y_pred.ndim == 0:
            y_pred, y = y_pred.reshape(1), y.reshape(1)
        super().update((y_pred.reshape(y_pred.shape[0], -1), y.reshape(y.shape[0], -1)))

    def compute(self) -> Dict[str, float]:  # type: ignore[override]
        import ignite.distributed as idist

        if len(self._predictions) < 1:
            raise NotComputableError("VolumeClassificationMetrics needs at least one volume before it can be computed")
        preds, targets = torch.cat(self._predictions, dim=0), torch.cat(self._targets, dim=0)
        if idist.get_world_size() > 1:
            preds, targets = idist.all_gather(preds), idist.all_gather(targets)
        return self._compute(preds, targets)

    def completed(self, engine: Any, name: str) -> None:
        result = self.compute()
        engine.state.metrics[name] = result[self.key]
        for metric, value in result.items():
            engine.state.metrics[f"{name}_{metric}"] = value


# ------------------------------------------------------------------------------------ false-positive volume
def _spacing_from_affine(affine: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Voxel sizes (…, spatial_dims) from (…, R+1, R+1) affines: the norms of the first columns."""
    affine = torch.as_tensor(affine, dtype=torch.float64)
    return torch.sqrt((affine[..., :spatial_dims, :spatial_dims] ** 2).sum(dim=-2))


def _per_sample(batch: Any, key: str, what: str) -> List[Any]:
    """``batch[key]`` as a list over samples; ``batch`` is a collated dict or a decollated list of dicts."""
    if isinstance(batch, Mapping):
        if key not in batch:
            raise KeyError(f"FalsePositiveVolume: {what} key {key!r} is not in the batch (keys: {list(batch)})")
        value = batch[key]
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return [value[i] for i in range(value.shape[0])]
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(b, Mapping) for b in batch):
        missing = [i for i, b in enumerate(batch) if key not in b]
        if missing:
            raise KeyError(f"FalsePositiveVolume: {what} key {key!r} is not in batch items {missing[:5]} "
                           f"(keys: {list(batch[missing[0]])})")
        return [b[key] for b in batch]
    raise TypeError(f"FalsePositiveVolume: cannot read {what} key {key!r} from a batch of type {type(batch).__name__}")


def _meta_spacing(value: Any, spatial_dims: int) -> Optional[torch.Tensor]:
    """Voxel sizes (B, spatial_dims) from a (batched) MetaTensor or a list of per-volume MetaTensors, else None."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, MetaTensor) for v in value):
            return torch.stack([_spacing_from_affine(v.affine, spatial_dims) for v in value])
        return None
    if not isinstance(value, MetaTensor):
        return None
    sizes = _spacing_from_affine(value.affine, spatial_dims)
    return sizes if sizes.ndim == 2 else sizes.expand(value.shape[0], -1)


def _stack(items: Any, what: str) -> torch.Tensor:
    """A plain tensor (B, ...) from a batched tensor or a decollated list of per-volume tensors."""
    if isinstance(items, (list, tuple)):
        if not items:
            raise ValueError(f"FalsePositiveVolume: {what} is an empty list")
        return torch.stack([_as_tensor(v, f"FalsePositiveVolume: {what}") for v in items])
    return _as_tensor(items, f"FalsePositiveVolume: {what}")


class FalsePositiveVolume(Metric):
    """Ignite metric: predicted-positive voxels summed over the volumes whose ground truth is empty.

    SMART-Net's FPV: on ICH-negative scans every predicted voxel is a false positive. ``output_transform``
    gives ``(y_pred, y)`` or ``(y_pred, y, depths)`` (MONAI evaluators: ``from_engine(["pred", "label"])``):

    - ``y_pred``: (B, 1, H, W, D) probabilities (``sigmoid=False``) or logits (``sigmoid=True``); a voxel is
      positive when its probability is ``> threshold``;
    - ``y``: (B, 1, H, W, D) ground truth (a volume is negative when no voxel is > 0);
    - ``depths``: (B,) true depths of depth-padded batches: slices at ``>= depth`` are not counted (or name the
      batch key with ``depth_key``). Decollated lists of per-volume tensors are accepted.

    The result is in voxels (the reference's unit). Millilitres need the voxel size, taken from, in order:
    ``spacing`` (mm, the same for all volumes), the MetaTensor affine of ``engine.state.batch[spacing_key]``
    (e.g. ``"image"``, when ``prepare_batch`` strips meta data), the MetaTensor affine of ``y_pred`` or ``y``.
    ``engine.state.metrics[name]`` = voxels, ``[f"{name}_ml"]`` = mL (``nan`` if a negative volume's spacing is
    unknown), ``[f"{name}_negatives"]`` = how many negative volumes were seen. :meth:`result` returns the three.

    Args:
        threshold: probability threshold for a positive voxel.
        sigmoid: ``y_pred`` are logits.
        spacing: voxel size in mm (one value per spatial axis), overrides meta data.
        spacing_key: batch key whose MetaTensor affine gives the voxel size.
        depth_key: batch key with the true depths (e.g. ``"depth"`` from
            :func:`genesis_monai.data.depth_collate.pad_depth_collate`).
        output_transform: Ignite output transform.
        device: where the sums are accumulated.
    """

    def __init__(self, threshold: float = 0.5, sigmoid: bool = False, spacing: Optional[Sequence[float]] = None,
                 spacing_key: Optional[str] = None, depth_key: Optional[str] = None,
                 output_transform: Callable = lambda x: x, device: Union[str, torch.device] = "cpu") -> None:
        self.threshold = float(threshold)
        self.sigmoid = bool(sigmoid)
        if spacing is not None:
            spacing = [float(s) for s in spacing]
            if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"FalsePositiveVolume: spacing must be positive voxel sizes in mm, got {spacing!r}")
        self.spacing = spacing
        self.spacing_key = spacing_key
        self.depth_key = depth_key
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._voxels = torch.zeros((), dtype=torch.float64, device=self._device)
        self._ml = torch.zeros((), dtype=torch.float64, device=self._device)
        self._negatives = torch.zeros((), dtype=torch.float64, device=self._device)
        self._unknown_spacing = torch.zeros((), dtype=torch.float64, device=self._device)

    def iteration_completed(self, engine: Any) -> None:
        output = self._output_transform(engine.state.output)
        if isinstance(output, Mapping):
            output = (output["y_pred"], output["y"])
        if not isinstance(output, (list, tuple)) or len(output) not in (2, 3):
            raise ValueError("FalsePositiveVolume: output_transform must give (y_pred, y) or (y_pred, y, depths)")
        output = list(output)
        batch = getattr(engine.state, "batch", None)
        if self.depth_key is not None and len(output) == 2:
            depths = _per_sample(batch, self.depth_key, "depth")
            output.append(torch.stack([torch.as_tensor(d).reshape(()) for d in depths]))
        spacing = None
        if self.spacing is None and self.spacing_key is not None:
            values = _per_sample(batch, self.spacing_key, "spacing")
            if not all(isinstance(v, MetaTensor) for v in values):
                raise TypeError(f"FalsePositiveVolume: batch[{self.spacing_key!r}] must be a MetaTensor (its affine "
                                f"gives the voxel size), got {type(values[0]).__name__}")
            spacing = torch.stack([_spacing_from_affine(v.affine, v.ndim - 1) for v in values])
        self._update(*output, spacing=spacing)

    def update(self, output: Sequence[Any]) -> None:
        """``output`` = ``(y_pred, y)`` or ``(y_pred, y, depths)`` (see the class docstring)."""
        if not isinstance(output, (list, tuple)) or len(output) not in (2, 3):
            raise ValueError("FalsePositiveVolume: output must be (y_pred, y) or (y_pred, y, depths)")
        self._update(*output)

    @reinit__is_reduced
    def _update(self, y_pred: Any, y: Any, depths: Any = None, spacing: Optional[torch.Tensor] = None) -> None:
        pred, label = _stack(y_pred, "y_pred"), _stack(y, "y")
        if pred.shape != label.shape:
            raise ValueError(f"FalsePositiveVolume: y_pred {tuple(pred.shape)} and y {tuple(label.shape)} differ")
        if pred.ndim < 3 or pred.shape[1] != 1:
            raise ValueError(f"FalsePositiveVolume: expected (B, 1, *spatial) binary maps, got {tuple(pred.shape)}")
        batch_size, spatial = pred.shape[0], pred.ndim - 2
        pred, label = pred.to(self._device), label.to(self._device)
        prob = torch.sigmoid(pred.float()) if self.sigmoid else pred
        positive = prob > self.threshold
        if depths is not None:
            depths = torch.as_tensor(depths).reshape(-1).to(device=self._device, dtype=torch.long)
            if depths.numel() != batch_size:
                raise ValueError(f"FalsePositiveVolume: {depths.numel()} depths for a batch of {batch_size}")
            # slices past a volume's true depth are padding, not part of the scan
            inside = torch.arange(pred.shape[-1], device=self._device)[None, :] < depths[:, None]
            positive = positive & inside.view(batch_size, *([1] * spatial), pred.shape[-1])
        negative = label.reshape(batch_size, -1).amax(dim=1) <= 0
        counts = positive.reshape(batch_size, -1).sum(dim=1).to(torch.float64)
        self._voxels += counts[negative].sum()
        self._negatives += negative.sum().to(torch.float64)
        if self.spacing is not None:
            if len(self.spacing) != spatial:
                raise ValueError(f"FalsePositiveVolume: spacing {self.spacing} has {len(self.spacing)} values for "
                                 f"{spatial} spatial dims")
            sizes = torch.tensor(self.spacing, dtype=torch.float64).expand(batch_size, -1)
        else:
            sizes = spacing
            for source in (y_pred, y):
                if sizes is None:
                    sizes = _meta_spacing(source, spatial)
        if sizes is None:
            self._unknown_spacing += negative.sum().to(torch.float64)
            return
        sizes = sizes.to(device=self._device, dtype=torch.float64)
        if sizes.shape != (batch_size, spatial):
            raise ValueError(f"FalsePositiveVolume: voxel sizes of shape {tuple(sizes.shape)} for a batch of shape "
                             f"{tuple(pred.shape)}")
        voxel_ml = sizes.prod(dim=1) / 1000.0  # mm^3 -> mL
        self._ml += (counts * voxel_ml)[negative].sum()

    @sync_all_reduce("_voxels", "_ml", "_negatives", "_unknown_spacing")
    def result(self) -> Dict[str, float]:
        """The run's ``{"voxels", "ml", "negatives"}`` (``ml`` is nan when a negative volume has no spacing)."""
        unknown = float(self._unknown_spacing)
        return {"voxels": float(self._voxels), "ml": float("nan") if unknown > 0 else float(self._ml),
                "negatives": int(self._negatives)}

    def compute(self) -> float:
        """False-positive volume in voxels."""
        return self.result()["voxels"]

    def completed(self, engine: Any, name: str) -> None:
        result = self.result()
        engine.state.metrics[name] = result["voxels"]
        engine.state.metrics[f"{name}_ml"] = result["ml"]
        engine.state.metrics[f"{name}_negatives"] = result["negatives"]
