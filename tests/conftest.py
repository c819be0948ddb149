"""Shared fixtures of the Python suite. Helpers live in tests/pkutil.py.

PK_BIN        the pipekernel binary under test (make test sets it)
PK_BUILD      the build folder
JUPYTER_PATH  PK_BUILD/jupyter, which holds the test kernelspec
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pkutil  # noqa: E402


@pytest.fixture(scope="session")
def pk_bin():
    if not pkutil.PK_BIN.exists():
        pytest.fail(f"{pkutil.PK_BIN} is missing: run make first")
    return pkutil.PK_BIN


@pytest.fixture
def cli(pk_bin):
    return pkutil.run_cli


@pytest.fixture
def kernel(pk_bin):
    """A started pipekernel with a ready blocking client: (km, kc)."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="pipekernel", startup_timeout=pkutil.scaled(30))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
