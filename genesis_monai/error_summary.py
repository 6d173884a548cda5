"""End a failing bundle run on the reason, not on MONAI's wrapper.

An error raised while MONAI evaluates a config expression leaves the process as
``RuntimeError: Failed to evaluate ConfigExpression ...``; the project's own message (the missing
folder, the file to fix) sits in the middle of a traceback of 60-750 lines. The hook installed by
:func:`install_error_summary` prints Python's usual traceback and then, as the last lines, the
innermost error raised in ``genesis_monai`` (or, when none was, the root cause of the chain).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import List, Optional, Type

__all__ = ["exception_chain", "raised_in_package", "summary_line", "install_error_summary"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_RULE = "=" * 78


def exception_chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and the errors it was raised from (``__cause__``, else an unsuppressed ``__context__``), outer first."""
    chain: List[BaseException] = []
    seen = set()
    node: Optional[BaseException] = exc
    while node is not None and id(node) not in seen:
        chain.append(node)
        seen.add(id(node))
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    return chain


def raised_in_package(exc: BaseException) -> bool:
    """Whether the frame that raised ``exc`` is in genesis_monai's own source."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def summary_line(exc: BaseException) -> Optional[str]:
    """The line to print after the traceback, or None when the traceback already ends with the reason."""
    chain = exception_chain(exc)
    if len(chain) < 2:
        return None
    ours = [e for e in chain if raised_in_package(e)]
    reason = ours[-1] if ours else chain[-1]
    if reason is chain[0]:
        return None
    who = "genesis_monai" if ours else "cause"
    return f"{who}: {type(reason).__name__}: {reason}"


def _hook(previous):  # the chained hook keeps whatever another library installed
    def hook(exc_type: Type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
        previous(exc_type, exc, tb)
        try:
            line = summary_line(exc)
        except Exception:  # a summary must never hide the original error
            line = None
        if line:
            who, reason = line.split(": ", 1)
            body = "\n".join("  " + part for part in reason.splitlines())
            sys.stderr.write(f"\n{_RULE}\nThe run failed. Reason ({who}):\n{body}\n{_RULE}\n")
            sys.stderr.flush()

    hook.genesis_monai_summary = True  # type: ignore[attr-defined]
    return hook


def install_error_summary() -> None:
    """Make an uncaught error's reason the last lines on stderr (idempotent; chains the current hook)."""
    if not getattr(sys.excepthook, "genesis_monai_summary", False):
        sys.excepthook = _hook(sys.excepthook)
