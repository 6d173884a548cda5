"""The ``extract-cubes`` command: ``python -m genesis_monai extract-cubes --data DIR --save DIR [options]``.

Its flags are the fields of :class:`~genesis_monai.data.extraction_options.ExtractionOptions` (the
signature and the ``--help`` text are built from them, so an option is declared in one place) plus
four flags about the run itself: ``--overwrite``, ``--folds``, ``--num_workers``, ``--quiet``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys
from typing import Any, List, Mapping, Optional

from genesis_monai.data.extract import extract_cubes_from_folder
from genesis_monai.data.extraction_options import ExtractionOptions
from genesis_monai.data.readers import MissingReaderError

__all__ = ["extract_cubes_cli", "format_summary"]


def format_summary(summary: Mapping[str, Any]) -> str:
    """A human-readable multi-line summary of :func:`extract_cubes_from_folder`'s result."""
    lines = [f"volumes: {summary['volumes_found']} found, {summary['volumes_read']} read, "
             f"{len(summary['skipped'])} skipped or empty"]
    for s in summary["skipped"]:
        lines.append(f"  skipped {s['path']}: {s['reason']}")
    for fold, n in sorted(summary["cubes_written"].items()):
        lines.append(f"  fold {fold}: {n} cubes written" + ("" if n else " (no file)"))
    if summary["folds_kept"]:
        lines.append(f"  folds kept from an earlier run (use --overwrite to redo): {sorted(summary['folds_kept'])}")
    lines.append("cubes per split: " + ", ".join(f"{k} {v}" for k, v in summary.get("splits", {}).items()))
    if summary.get("datalist"):
        lines.append(f"datalist: {summary['datalist']}")
    lines.append(f"time: {summary.get('seconds', 0):.1f} s")
    return "\n".join(lines)


def _fold_list(folds: Any) -> Optional[List[int]]:
    """``--folds 0,1,2`` (fire gives a tuple), ``--folds 3`` or ``--folds "0 1"`` -> [0, 1, 2]."""
    if folds is None:
        return None
    if isinstance(folds, str):
        folds = [f for f in re.split(r"[,\s]+", folds.strip("()[] ")) if f]
    elif not isinstance(folds, (list, tuple)):
        folds = [folds]
    try:
        return [int(f) for f in folds]
    except (TypeError, ValueError):
        raise ValueError(f"--folds expects fold numbers like 0,1,2, got {folds!r}") from None


def extract_cubes_cli(data: str, save: str, overwrite: bool = False, folds: Any = None, num_workers: int = 0,
                      quiet: bool = False, **options: Any) -> None:
    # the signature fire shows and the docstring are set below, from ExtractionOptions
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = extract_cubes_from_folder(data, save, ExtractionOptions.from_mapping(options),
                                            overwrite=overwrite, folds=_fold_list(folds),
                                            num_workers=num_workers, progress=not quiet)
    except (ValueError, FileNotFoundError, MissingReaderError) as err:
        print(f"extract-cubes: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(summary))


def _cli_signature() -> inspect.Signature:
    P = inspect.Parameter
    params = [P("data", P.POSITIONAL_OR_KEYWORD, annotation=str), P("save", P.POSITIONAL_OR_KEYWORD, annotation=str)]
    defaults = ExtractionOptions()
    # keyword-only: fire passes them as --flags (by name), never by position
    params += [P(f.name, P.KEYWORD_ONLY, default=getattr(defaults, f.name)) for f in dataclasses.fields(ExtractionOptions)]
    run = inspect.signature(extract_cubes_cli).parameters
    params += [run[name].replace(kind=P.KEYWORD_ONLY) for name in ("overwrite", "folds", "num_workers", "quiet")]
    return inspect.Signature(params, return_annotation=None)


extract_cubes_cli.__signature__ = _cli_signature()  # type: ignore[attr-defined]
extract_cubes_cli.__doc__ = f"""Cut pretraining cubes out of a folder of CT/MRI volumes (``python -m genesis_monai extract-cubes``).

Writes ``bat_{{scale}}_s_{{X}}x{{Y}}x{{Z}}_{{fold}}.npy`` per fold and ``cubes_datalist.json`` into SAVE and
prints a summary. Re-running skips folds already written (``--overwrite`` redoes them). Exits with
status 1 and a message (no traceback) on bad input, e.g. when no volume is readable or the
training or validation split would be empty.

Args:
    data: folder of volumes (.nii/.nii.gz/.mhd/.nrrd/DICOM series folders), flat or in --fold_pattern sub-folders.
    save: output folder.
{ExtractionOptions.cli_help()}
    overwrite: redo folds whose file exists, and replace cubes made with other settings.
    folds: only these folds, e.g. 0,1,2.
    num_workers: reader threads (0: none).
    quiet: no progress bars.
"""
