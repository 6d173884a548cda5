"""Refuse config overrides that name ids no config file defines (``--lerning_rate 0.1``).

MONAI's bundle runner adds any ``--key value`` as a new config id, so a misspelt override is
silently ignored: the run trains with the default and provenance records the default. The check
here compares every override id with the merged config files and names the nearest known id.

Rules, for an override id ``a#b#c``:

- ``a`` must be a top-level id of the config files (else: error);
- every parent (``a``, ``a#b``) must exist (else: error);
- a new key inside an existing dictionary (``network_def#dropout``) is allowed, with a warning,
  because it is how a user passes one more argument to a ``_target_``.

To add ids of your own, put them in an extra config file and pass it in ``--config_file``.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import logging
import os
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["UnknownConfigIdError", "config_ids", "unknown_override_ids", "check_override_ids", "monai_run_arguments", "cli_overrides",
           "check_cli_overrides"]

logger = logging.getLogger(__name__)

_SEP = "#"


class UnknownConfigIdError(KeyError):
    """An override names a config id that no config file defines."""

    def __str__(self) -> str:  # KeyError would print the message as a quoted repr
        return str(self.args[0]) if self.args else ""


def config_ids(config: Any, prefix: str = "") -> Set[str]:
    """Every id of a parsed config, nested ones joined with ``#`` (list items by index)."""
    ids: Set[str] = set()
    items: Iterable[Tuple[Any, Any]]
    if isinstance(config, dict):
        items = config.items()
    elif isinstance(config, list):
        items = enumerate(config)
    else:
        return ids
    for key, value in items:
        id_ = f"{prefix}{_SEP}{key}" if prefix else str(key)
        ids.add(id_)
        ids |= config_ids(value, id_)
    return ids


def _nearest(id_: str, known: Iterable[str]) -> Optional[str]:
    matches = difflib.get_close_matches(id_, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_override_ids(overrides: Iterable[str], config: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    """Split override ids that ``config`` does not define into (errors, warnings), each a readable line."""
    known = config_ids(dict(config))
    top = {k for k in known if _SEP not in k}
    errors, warnings_ = [], []
    for id_ in overrides:
        id_ = str(id_).replace("::", _SEP)
        if id_ in known:
            continue
        parts = id_.split(_SEP)
        parent = _SEP.join(parts[:-1])
        if len(parts) > 1 and parent in known and isinstance(_lookup(config, parent), dict):
            near = _nearest(id_, (k for k in known if k.startswith(parent + _SEP)))
            warnings_.append(f"{id_!r} adds a new key to {parent!r}" + (f" (did you mean {near!r}?)" if near else ""))
            continue
        pool = top if len(parts) == 1 else known
        near = _nearest(id_, pool)
        errors.append(f"{id_!r}" + (f" (did you mean {near!r}?)" if near else ""))
    return errors, warnings_


def _lookup(config: Mapping[str, Any], id_: str) -> Any:
    node: Any = config
    for part in id_.split(_SEP):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def check_override_ids(overrides: Iterable[str], config: Mapping[str, Any], source: str = "the config files") -> None:
    """Raise :class:`UnknownConfigIdError` (a ``KeyError``) naming every override id that ``config`` lacks and the nearest known id.

    ``source`` names the config files in the message. New keys inside an existing dictionary only
    log a WARNING (see the module docstring).
    """
    errors, warnings_ = unknown_override_ids(overrides, config)
    for line in warnings_:
        logger.warning("config override %s", line)
    if errors:
        raise UnknownConfigIdError(
            f"unknown config id(s) {', '.join(errors)}: no id of that name in {source}, so the override would "
            "be ignored. Check the spelling (ids are case-sensitive; nested ids use '#', e.g. "
            "network_def#width); to add an id of your own, define it in an extra config file passed in "
            "--config_file.")


def monai_run_arguments() -> Set[str]:
    """Names ``monai.bundle run`` takes as its own arguments, not as config ids."""
    from monai.bundle import ConfigWorkflow
    from monai.bundle import scripts

    names: Set[str] = set()
    for fn in (scripts.run, scripts.create_workflow, ConfigWorkflow.__init__):
        names |= {p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return names


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cli_overrides(argv: Sequence[str]) -> Tuple[Optional[Any], Dict[str, Any]]:
    """``(config_file, overrides)`` of a ``monai.bundle run`` command line (``argv`` without the program).

    Reads fire's syntax: ``--key value``, ``--key=value`` and a bare ``--flag``; values as Python
    literals where they parse. ``--args_file`` entries count as overrides too.
    """
    args = list(argv)
    if args and args[0] == "run":
        args = args[1:]
    named: Dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("--") and len(token) > 2:
            key, eq, text = token[2:].partition("=")
            if eq:
                named[key] = _value(text)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                named[key] = _value(args[i + 1])
                i += 1
            else:
                named[key] = True
        i += 1
    named = {k.replace("-", "_") if k.replace("-", "_") in monai_run_arguments() else k: v for k, v in named.items()}
    if named.get("args_file"):
        from monai.bundle import ConfigParser

        named = {**ConfigParser.load_config_file(str(named["args_file"])), **named}
    run_args = monai_run_arguments()
    return named.get("config_file"), {k: v for k, v in named.items() if k not in run_args}


def _is_bundle_cli(argv0: str) -> bool:
    path = os.path.normpath(argv0)
    return path.endswith(os.path.join("monai", "bundle", "__main__.py")) or argv0 in ("-m", "monai.bundle")


def check_cli_overrides(argv: Optional[Sequence[str]] = None) -> None:
    """Under ``python -m monai.bundle run`` (or torchrun ``-m monai.bundle``), check the command line's overrides.

    Does nothing when the process is not MONAI's bundle command line (a Python caller checks its
    overrides with :func:`check_override_ids`, as :func:`genesis_monai.bundles.bundle_parser` does).
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or not _is_bundle_cli(argv[0]):
        return
    config_file, overrides = cli_overrides(argv[1:])
    if not overrides or config_file is None:
        return
    from monai.bundle import ConfigParser

    config = ConfigParser.load_config_files(config_file)
    check_override_ids(overrides, config, source=f"--config_file {config_file}")

