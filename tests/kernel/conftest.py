"""Fixtures of the kernel protocol tests (helpers are in pkkernel.py)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pkkernel import start_kernel  # noqa: E402


@pytest.fixture
def pk():
    """(km, kc) of a fresh kernel; shut down after the test."""
    km, kc = start_kernel()
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=False)
