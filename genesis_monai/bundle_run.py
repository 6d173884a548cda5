"""What every genesis_monai bundle config runs first: its ``preflight`` id, at the head of ``initialize``.

``python -m monai.bundle run`` gives a bundle no hook of its own before it resolves the config, so
the checks that must happen before any data is read live in this one call:

- a failing run ends on its reason (:func:`genesis_monai.error_summary.install_error_summary`);
- override ids on the command line that no config file defines are refused, naming the nearest id
  (:func:`genesis_monai.config_ids.check_cli_overrides`).

The configs' other preflight entries (e.g. :func:`genesis_monai.engines.protect_finished_outputs`)
follow it in the same list.
"""

from __future__ import annotations

from typing import Optional, Sequence

from genesis_monai.config_ids import check_cli_overrides
from genesis_monai.error_summary import install_error_summary

__all__ = ["preflight"]


def preflight(argv: Optional[Sequence[str]] = None) -> bool:
    """Install the error summary and check the command line's override ids; True when done (for the config)."""
    install_error_summary()
    check_cli_overrides(argv)
    return True
