import os
import tempfile

import pytest
import torch

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("ATTNCOURSE_PROFILE", "smoke")
os.environ.setdefault("ATTNCOURSE_PROGRESS", "off")
# Tests never read or write the user's run store (~/.cache/attncourse/runs).
os.environ.setdefault("ATTNCOURSE_RUNS", tempfile.mkdtemp(prefix="attncourse-test-runs-"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
