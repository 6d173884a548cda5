"""One log block saying which caps a run is under, so no setting changes behind the user's back."""

from __future__ import annotations

import logging
from typing import Any, Mapping

__all__ = ["log_demo_caps"]

logger = logging.getLogger("genesis_monai.run_settings")


def log_demo_caps(use_demo_caps: bool, demo_caps: Mapping[str, Any], dataset_dir: str, config: str = "") -> bool:
    """Log whether the bundle's ``demo_caps`` are in force and what they are; returns ``use_demo_caps``.

    Bundles detect their embedded demo data set (``use_demo_caps``) and then run at demo scale so the
    out-of-the-box command ends on its own and shows learning on a CPU; every cap is a visible
    config id (``demo_caps``), printed here, and each can be overridden on the command line.
    """
    where = f" ({config})" if config else ""
    if use_demo_caps:
        caps = ", ".join(f"{k}={v}" for k, v in demo_caps.items())
        logger.warning("dataset_dir %s is the embedded demo data set%s: demo caps in force (config id "
                       "'demo_caps'): %s. Override any of them (e.g. --network_width 1.0), or run the published "
                       "recipe with --use_demo_caps false.", dataset_dir, where, caps)
    else:
        logger.info("dataset_dir %s%s: published recipe settings (demo caps off)", dataset_dir, where)
    return bool(use_demo_caps)
