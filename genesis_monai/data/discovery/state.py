"""The resumable record of a self-discovery run: ``discovery_state.json`` in the output folder.

It holds what a rerun needs to continue identically (and what a reader needs to know where each
pattern came from, as the reference's ``*_vwGen_exRef.txt`` logs did):

* ``features``: the settings of the feature step and the volumes used (sources, volumes kept, their
  shapes, the ones skipped and why), beside ``train_features.npy`` / ``validation_features.npy``;
* ``patterns``: the settings of the pattern step, every class planned so far (reference volume,
  coordinate, trials used), the references tried, the planning RNG state, the nearest neighbours of
  every class, and the chunks written.

Written atomically (:func:`genesis_monai.io_utils.atomic_write_json`) after each step, so a run
killed at any point resumes from the last complete step.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from genesis_monai.io_utils import atomic_write_json, jsonable

__all__ = ["STATE_FILE", "STATE_VERSION", "read_state", "write_state", "settings_differences", "jsonable"]

STATE_FILE = "discovery_state.json"
STATE_VERSION = 1


def read_state(folder: str) -> Optional[Dict[str, Any]]:
    """The state of ``folder`` or None when there is none; ValueError naming the file when it is unreadable."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable self-discovery state ({err}); move it away to start afresh"
                         ) from err
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: unknown state version {state.get('version') if isinstance(state, dict) else None!r} "
                         f"(expected {STATE_VERSION}); use a new output folder")
    return state


def write_state(folder: str, state: Dict[str, Any]) -> str:
    """Write ``state`` (version added) atomically; returns the path."""
    state["version"] = STATE_VERSION
    return atomic_write_json(os.path.join(folder, STATE_FILE), jsonable(state), indent=1)


def settings_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any],
                         may_grow: Sequence[str] = ()) -> List[str]:
    """Names of settings that differ between a recorded run and this one (``may_grow``: may be larger now)."""
    rec, new = jsonable(dict(recorded)), jsonable(dict(wanted))
    out = []
    for key in sorted(set(rec) | set(new)):
        a, b = rec.get(key), new.get(key)
        if a == b:
            continue
        if key in may_grow and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b >= a:
            continue
        out.append(f"{key}: {a!r} -> {b!r}" if not isinstance(a, list) or len(str(a)) < 120 else f"{key} changed")
    return out
