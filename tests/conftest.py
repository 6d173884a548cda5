import os

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing when pytest runs other work.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLES_DIR = os.path.join(REPO_ROOT, "bundles")


@pytest.fixture
def repo_root():
    return REPO_ROOT
