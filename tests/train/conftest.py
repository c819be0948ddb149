"""Fixtures of the train suite (helpers in trainutil.py)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def torch():
    import torch as t
    t.set_num_threads(1)
    return t
