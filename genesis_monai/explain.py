"""``python -m genesis_monai explain``: Grad-CAM overlays and a t-SNE map of a slice network's representation.

SMART-Net's authors announced both pictures and never released them. Here, for a bundle whose
``training.json`` trains a :class:`~genesis_monai.networks.SMARTNet` (``--bundle smart_net``):

1. the upstream checkpoint (``models/pretrained.pt`` by default) is loaded into the bundle's
   ``network_def``;
2. every slice of the chosen split's volumes goes through the bundle's own ``volume_transforms``
   (HU window, in-plane resize, CLAHE), so the pictures show what the network saw;
3. **Grad-CAM** (``monai.visualize.GradCAM`` on ``encoder.layer4``, the class logit; GradCAM++ fails
   for batch > 1 in MONAI 1.6.1) for ``n_slices`` slices: the lesion slices with the largest lesions
   and as many negative slices with the highest predicted probability (false-positive candidates),
   drawn next to the segmentation head's mask and the label (``gradcam.png``);
4. **t-SNE** (scikit-learn, an optional extra) of the global-average-pooled layer4 features
   (2048-d at width 1.0) of up to ``max_tsne_slices`` slices, coloured by slice label (``tsne.png``).

Everything is batched (``batch_size`` slices per forward); ``explain.json`` lists what was written.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["explain", "explain_cli", "ClassLogit", "slice_embeddings", "gradcam_maps", "tsne_points"]


class ClassLogit(nn.Module):
    """A SMARTNet seen as a classifier: ``forward(x) -> (N, 1)`` class logits (what ``GradCAM`` expects)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["cls"]


@torch.no_grad()
def slice_embeddings(net: nn.Module, slices: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(N, C, H, W) slices -> (N, F) global-average-pooled deepest encoder features (F = 2048 at width 1.0)."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for s in range(0, len(slices), int(batch_size)):
        feats = net.encode(slices[s:s + int(batch_size)].to(device))
        out.append(feats[-1].mean(dim=(2, 3)).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def gradcam_maps(net: nn.Module, slices: torch.Tensor, target_layer: str = "net.encoder.layer4",
                 batch_size: int = 16) -> torch.Tensor:
    """Grad-CAM of the class logit for (N, C, H, W) slices -> (N, 1, H, W) maps in [0, 1] (MONAI ``GradCAM``)."""
    from monai.visualize import GradCAM

    wrapper = ClassLogit(net).eval()
    cam = GradCAM(nn_module=wrapper, target_layers=target_layer)
    device = next(net.parameters()).device
    maps = [cam(x=slices[s:s + int(batch_size)].to(device), class_idx=0).detach().cpu()
            for s in range(0, len(slices), int(batch_size))]
    return torch.cat(maps) if maps else torch.zeros(0, 1, *slices.shape[2:])


def tsne_points(features: np.ndarray, seed: int = 0, perplexity: Optional[float] = None) -> np.ndarray:
    """(N, F) -> (N, 2) t-SNE coordinates (scikit-learn); ImportError with the install line when it is missing."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError("the t-SNE picture needs scikit-learn: pip install scikit-learn "
                          "(or run explain with --tsne false for the Grad-CAM overlays only)") from err
    n = len(features)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 slices, got {n}")
    perplexity = float(perplexity) if perplexity else float(min(30.0, (n - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(seed)).fit_transform(
        np.asarray(features, dtype=np.float32))


def _volume_slices(parser: Any, entries: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Every axial slice of ``entries`` after the bundle's ``volume_transforms``: images, masks, labels, names."""
    from monai.transforms import Compose

    transform = Compose(parser.get_parsed_content("volume_transforms", instantiate=True))
    images, masks, names = [], [], []
    for entry in entries:
        d = transform(dict(entry))
        img, lab = torch.as_tensor(d["image"]), torch.as_tensor(d["label"])
        if img.ndim != 4:
            raise ValueError(f"{entry.get('image')}: expected a (C, H, W, D) volume after volume_transforms, got "
                             f"shape {tuple(img.shape)}")
        images.append(img.permute(3, 0, 1, 2))  # (D, C, H, W)
        masks.append(lab.permute(3, 0, 1, 2))
        base = os.path.basename(str(entry.get("image")))
        names += [f"{base}[{z}]" for z in range(img.shape[-1])]
    if not images:
        raise ValueError("no volumes to explain (the split is empty)")
    image, mask = torch.cat(images).float(), (torch.cat(masks) > 0.5).float()
    return {"image": image, "mask": mask, "label": mask.flatten(1).amax(1), "names": names}


def _pick(label: torch.Tensor, lesion_size: torch.Tensor, prob: Optional[torch.Tensor], n: int) -> List[int]:
    pos = torch.nonzero(label > 0.5).flatten()
    neg = torch.nonzero(label <= 0.5).flatten()
    n_pos = min(len(pos), (n + 1) // 2)
    pos = pos[torch.argsort(lesion_size[pos], descending=True)][:n_pos]
    order = torch.argsort(prob[neg], descending=True) if prob is not None else torch.arange(len(neg))
    neg = neg[order][:n - n_pos]
    return [int(i) for i in torch.cat([pos, neg])]


def explain(bundle: str = "smart_net", bundle_dir: Optional[str] = None, checkpoint: Optional[str] = None,
            dataset_dir: Optional[str] = None, split: str = "validation", output_dir: Optional[str] = None,
            n_slices: int = 6, tsne: bool = True, max_tsne_slices: int = 500, batch_size: int = 16,
            device: str = "cpu", seed: int = 0, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write ``gradcam.png``, ``tsne.png`` and ``explain.json`` for a slice-network bundle; returns what was written.

    Args:
        bundle: bundle name under the bundles folder (or ``bundle_dir``: a bundle folder).
        checkpoint: the upstream weights (default ``<bundle>/models/pretrained.pt``).
        dataset_dir: data to explain (default: the bundle's ``dataset_dir``); split: which split of it.
        output_dir: default ``<bundle>/eval/explain``.
        n_slices: rows of the Grad-CAM picture; tsne: also the t-SNE map; max_tsne_slices: cap on its points.
        overrides: further bundle config ids (e.g. ``{"network_width": 0.25}`` for weights trained at that width).
    """
    from genesis_monai.bundles import bundle_parser, bundle_path
    from genesis_monai.viz_slices import save_embedding_map, save_gradcam_overlays
    from genesis_monai.weights import read_checkpoint

    from genesis_monai.weights import checkpoint_provenance

    root = bundle_path(bundle, bundle_dir)
    ckpt_path = str(checkpoint or os.path.join(root, "models", "pretrained.pt"))
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"no upstream checkpoint at {ckpt_path}: run the bundle's training.json first or pass "
                                "--checkpoint")
    ckpt = read_checkpoint(ckpt_path)
    ids = dict(overrides or {})
    # build the network the checkpoint was trained as (its provenance records width and pretexts)
    recorded = (checkpoint_provenance(ckpt).get("network") or {}).get("args") or {}
    for arg, id_ in (("width", "network_width"), ("pretexts", "pretexts")):
        if arg in recorded and id_ not in ids:
            ids[id_] = recorded[arg]
    if dataset_dir is not None:
        ids["dataset_dir"] = str(dataset_dir)
    parser = bundle_parser(root, "training.json", ids)
    net = parser.get_parsed_content("network_def", instantiate=True)
    if not hasattr(net, "encode"):
        raise TypeError(f"{root}/configs/training.json: network_def is a {type(net).__name__}; explain needs a "
                        "2D slice network with encode() and a dict output (SMARTNet)")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{ckpt_path} does not fit the bundle's network_def ({type(net).__name__}, width "
                         f"{parser.get_parsed_content('network_width')}): pass the ids it was trained with, e.g. "
                         f"--overrides \"{{'network_width': 0.25}}\" ({str(err).splitlines()[0]})") from None
    net = net.to(torch.device(device)).eval()
    data = parser.get_parsed_content("data")
    if split not in data or not data[split]:
        raise ValueError(f"split {split!r} of {parser.get_parsed_content('dataset_dir')} is empty or missing "
                         f"(splits: {sorted(k for k, v in data.items() if v)})")
    slices = _volume_slices(parser, data[split])
    out_dir = str(output_dir or os.path.join(root, "eval", "explain"))
    os.makedirs(out_dir, exist_ok=True)
    written: Dict[str, Any] = {"checkpoint": ckpt_path, "split": split, "slices": int(len(slices["label"]))}

    with torch.no_grad():
        probs, seg = [], []
        for s in range(0, len(slices["image"]), int(batch_size)):
            o = net(slices["image"][s:s + int(batch_size)].to(device))
            probs.append(torch.sigmoid(o["cls"]).flatten().cpu() if "cls" in o else None)
            seg.append(torch.sigmoid(o["seg"]).cpu() if "seg" in o else None)
    prob = torch.cat(probs) if probs and probs[0] is not None else None
    seg_prob = torch.cat(seg) if seg and seg[0] is not None else None
    if prob is None:
        logger.warning("the network has no classification head (pretexts without cls): no Grad-CAM picture")
    else:
        idx = _pick(slices["label"], slices["mask"].flatten(1).sum(1), prob, int(n_slices))
        maps = gradcam_maps(net, slices["image"][idx], batch_size=batch_size)
        written["gradcam"] = save_gradcam_overlays(
            slices["image"][idx], maps, os.path.join(out_dir, "gradcam.png"), label=slices["mask"][idx],
            seg_prob=None if seg_prob is None else seg_prob[idx], probabilities=prob[idx].tolist(),
            titles=[slices["names"][i] for i in idx], title=f"{bundle}: Grad-CAM of the class logit")
        written["gradcam_slices"] = [slices["names"][i] for i in idx]
    if tsne:
        rng = np.random.default_rng(int(seed))
        n = len(slices["label"])
        keep = np.sort(rng.choice(n, size=min(n, int(max_tsne_slices)), replace=False))
        feats = slice_embeddings(net, slices["image"][keep], batch_size=batch_size).numpy()
        pts = tsne_points(feats, seed=seed)
        written["tsne"] = save_embedding_map(pts, slices["label"][keep].numpy().astype(int),
                                             os.path.join(out_dir, "tsne.png"),
                                             names={0: "no hemorrhage", 1: "hemorrhage"},
                                             title=f"{bundle}: t-SNE of layer4 slice features ({len(keep)} slices)")
        written["tsne_slices"] = int(len(keep))
    from genesis_monai.io_utils import atomic_write_json

    atomic_write_json(os.path.join(out_dir, "explain.json"), written)
    return written


def explain_cli(**kwargs: Any) -> None:
    """Command-line wrapper of :func:`explain` (prints the written files as JSON)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(explain(**kwargs), indent=2))
