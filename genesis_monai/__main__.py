"""Command line: ``python -m genesis_monai COMMAND [ARGS]`` (fire).

Each command is imported only when it runs, so ``--help`` and light commands stay fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Dict, List, Optional

#: command name -> "module:function"
COMMANDS: Dict[str, str] = {
    "demo": "genesis_monai.transfer_demo:demo_cli",
    "demo-data": "genesis_monai.data.demo:write_demo_dataset",
    "extract-cubes": "genesis_monai.data.extract:extract_cubes_cli",
    "import-weights": "genesis_monai.weights:import_weights_cli",
    "benchmark": "genesis_monai.benchmarks:run_benchmark",
    "discover": "genesis_monai.data.discovery.cli:discover_cli",
    "explain": "genesis_monai.explain:explain_cli",
}

_HELP = {
    "demo": "a bundle (--bundle, default models_genesis) on the demo data: pretrain, fine-tune pretrained vs scratch, infer, table",
    "demo-data": "write the procedural chest-CT demo data set (NIfTI + datalist) to DIR",
    "extract-cubes": "cut 64x64x32 pretraining cubes out of a folder of CT/MRI volumes",
    "import-weights": "convert a published checkpoint (SRC) into a state dict for our networks (DST)",
    "benchmark": "print figures: `benchmark transforms | cubes | semantic-genesis` (speed) or `benchmark transfer` (your data)",
    "discover": "Semantic Genesis / TransVW self-discovery: features + pattern classes from a folder of volumes",
    "explain": "SMART-Net pictures: Grad-CAM overlays and a t-SNE map of slice features (--bundle smart_net)",
}


def _usage() -> str:
    lines = ["usage: python -m genesis_monai COMMAND [ARGS] (COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<15} {_HELP[name]}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    module_name, func_name = COMMANDS[name].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    fire.Fire(func, command=argv[1:], name=f"python -m genesis_monai {name}")


if __name__ == "__main__":
    main()
