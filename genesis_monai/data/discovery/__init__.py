"""Semantic Genesis / TransVW self-discovery, steps 2 and 3: patient features and anatomical pattern classes.

* :mod:`.volumes`: :class:`VolumeSet` (volumes read lazily, normalised to [0, 1]), :func:`split_sources`,
  :func:`resize_volumes`;
* :mod:`.features`: :func:`extract_features` (GAP of the deepest UNet3D encoder stage, (N, F) float32),
  :func:`feature_network`;
* :mod:`.patterns`: :func:`generate_patterns` (references, corners, nearest neighbours, crops in the
  reference file layout, resumable) and its vectorised parts;
* :mod:`.writer`: :class:`ChunkWriter`, ``datalist.json``; :mod:`.state`: ``discovery_state.json``;
* :mod:`.picture`: :func:`save_class_grid`;
* :mod:`.cli`: :func:`discover` (``python -m genesis_monai discover``).

Step 1 (training the auto-encoder whose encoder gives the features) is a bundle config, not here.
"""

from genesis_monai.data.discovery.cli import discover, discover_cli, format_discovery_summary  # noqa: F401
from genesis_monai.data.discovery.features import extract_features, feature_network  # noqa: F401
from genesis_monai.data.discovery.patterns import (  # noqa: F401
    cut_crops,
    draw_multires_boxes,
    find_coordinate,
    generate_patterns,
    multires_ranges,
    nearest_neighbours,
    plan_classes,
    resample_boxes,
)
from genesis_monai.data.discovery.picture import save_class_grid  # noqa: F401
from genesis_monai.data.discovery.volumes import VolumeSet, list_sources, resize_volumes, split_sources  # noqa: F401
from genesis_monai.data.discovery.writer import ChunkWriter, read_discovery_datalist  # noqa: F401

__all__ = [
    "discover", "discover_cli", "format_discovery_summary", "extract_features", "feature_network",
    "generate_patterns", "nearest_neighbours", "find_coordinate", "plan_classes", "multires_ranges",
    "draw_multires_boxes", "resample_boxes", "cut_crops", "save_class_grid", "VolumeSet", "list_sources",
    "resize_volumes", "split_sources", "ChunkWriter", "read_discovery_datalist",
]
