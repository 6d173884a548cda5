"""``python -m genesis_monai demo``: kept importable here; the code lives in :mod:`genesis_monai.transfer`.

:func:`run_demo` / :func:`demo_cli` are :func:`genesis_monai.transfer.cli.run_demo` / ``demo_cli``;
:func:`key_metric_name` is :func:`genesis_monai.transfer.stages.key_metric_name`.
"""

from genesis_monai.transfer.cli import demo_cli, run_demo  # noqa: F401
from genesis_monai.transfer.stages import key_metric_name  # noqa: F401

__all__ = ["run_demo", "demo_cli", "key_metric_name"]
