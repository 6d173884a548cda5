#!/usr/bin/env bash
# Build a separate virtual environment for MONAI Label 0.8.5 and install genesis_monai into it.
#
# Why a separate venv: monailabel 0.8.5 upgrades torch to a CUDA 2.14.1 build (plus ~7 GB of
# nvidia-* wheels) and pins numpy 1.26.4, which would break the project environment
# (see docs/monailabel.md).
#
# Usage:  bash scripts/setup_monailabel_venv.sh [VENV_DIR]
#         VENV_DIR defaults to $GENESIS_MONAILABEL_VENV, then to .venv-monailabel in the repo root.
# Env:    PYTHON   interpreter used to create the venv (default: python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${GENESIS_MONAILABEL_VENV:-$repo_root/.venv-monailabel}}"
python_bin="${PYTHON:-python3}"

echo "[setup_monailabel_venv] creating $venv with $python_bin"
"$python_bin" -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install --upgrade pip setuptools wheel

# 1. MONAI Label itself. Version pins that were verified to start a server (docs/monailabel.md):
#    - pydicom<3: pydicom-seg 0.4.1 imports pydicom._storage_sopclass_uids (removed in pydicom 3)
#    - dicomweb-client==0.59.3: 0.61 needs pydicom 3 (parse_basic_offsets)
"$pip" install "monailabel==0.8.5" "pydicom<3" "dicomweb-client==0.59.3"

# 2. genesis_monai, editable and without letting pip touch torch/numpy again; then the few
#    runtime dependencies monailabel does not already bring.
"$pip" install --no-deps -e "$repo_root"
"$pip" install "fire>=0.6" "matplotlib>=3.7" "tqdm>=4.60" "nibabel>=5" "pytorch-ignite>=0.5"

# 3. Smoke check: the server's import chain and our package.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import genesis_monai, monai, torch, numpy, monailabel  # noqa: F401
from monailabel.main import Main  # noqa: F401  (fails early on the pydicom/dicomweb conflicts)
for pkg in ("monailabel", "monai", "torch", "torchvision", "numpy", "pydicom", "dicomweb-client",
            "pytorch-ignite", "nibabel"):
    try:
        print(f"{pkg}=={md.version(pkg)}")
    except md.PackageNotFoundError:
        print(f"{pkg} not installed")
PY
echo "[setup_monailabel_venv] done: $venv"
