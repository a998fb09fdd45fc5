import os

import pytest
import torch

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("ATTNCOURSE_PROFILE", "smoke")
os.environ.setdefault("ATTNCOURSE_PROGRESS", "off")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
