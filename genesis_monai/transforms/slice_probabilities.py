"""Per-slice and per-volume probabilities from a probability map, written as one JSON report (inference)."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Hashable, Mapping, Optional

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from genesis_monai.io_utils import atomic_write_json

__all__ = ["SliceProbabilitiesd", "slice_probabilities"]


def slice_probabilities(prob: torch.Tensor, threshold: float = 0.5) -> Dict[str, Any]:
    """Summaries of a (C, X, Y, Z) probability map along its last (slice) axis.

    Returns ``{"volume_probability": max over voxels, "slice_probabilities": [max of each slice],
    "positive_slices": [indices whose max >= threshold], "positive_voxels": count >= threshold}``.
    A slice's probability is the highest voxel probability in it: a lesion anywhere in the slice makes
    it positive, the way SMART-Net derives slice labels from masks.
    """
    if not isinstance(prob, torch.Tensor):
        prob = torch.as_tensor(prob)
    if prob.ndim != 4:
        raise ValueError(f"expected a (C, X, Y, Z) probability map, got shape {tuple(prob.shape)}")
    p = prob.detach().float()
    per_slice = p.amax(dim=(0, 1, 2)).cpu()
    t = float(threshold)
    return {
        "volume_probability": float(per_slice.max()) if per_slice.numel() else 0.0,
        "slice_probabilities": [round(float(v), 6) for v in per_slice],
        "positive_slices": [int(i) for i in torch.nonzero(per_slice >= t).flatten()],
        "positive_voxels": int((p >= t).sum()),
    }


class SliceProbabilitiesd(MapTransform):
    """Add the per-slice / per-volume probabilities of ``keys`` (a sigmoid map in the input's geometry) to a report.

    Use in inference post-processing after ``Invertd`` and before thresholding. Every call adds the
    image's entry (named by its ``filename_or_obj`` meta) to ``{output_dir}/{file_name}`` and rewrites
    the file atomically, so the report always holds every volume done so far. The dict passes through
    unchanged, plus ``"<key>_volume_probability"``.
    """

    def __init__(self, keys: KeysCollection = "pred", output_dir: str = "./eval", file_name: str = "probabilities.json",
                 threshold: float = 0.5, image_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.path = os.path.join(str(output_dir), str(file_name))
        self.threshold = float(threshold)
        self.image_key = image_key
        self.report: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def _name(self, data: Mapping[Hashable, Any], key: Hashable) -> str:
        for source in (data.get(key), data.get(self.image_key)):
            meta = getattr(source, "meta", None) or {}
            name = meta.get("filename_or_obj")
            if name:
                return str(name)
        return f"volume_{len(self.report)}"

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            summary = slice_probabilities(d[key], self.threshold)
            d[f"{key}_volume_probability"] = summary["volume_probability"]
            with self._lock:
                self.report[self._name(d, key)] = summary
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                atomic_write_json(self.path, {"threshold": self.threshold, "volumes": self.report})
        return d

    @property
    def written(self) -> Optional[str]:
        return self.path if self.report else None
