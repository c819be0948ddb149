"""pipekernel in Python: the compiled pipeline stages of the Pipeline kernel,
run inside this Python process.

In IPython or a Jupyter notebook on ipykernel::

    %load_ext pipekernel
    %pk mkdata data
    %pk load data

    %%pk
    %md5 data/cifar-10-python.tar.gz
    %verify data/MANIFEST.md5

From Python::

    import pipekernel
    pipekernel.run("%load data")              # any magic lines
    ds = pipekernel.dataset()                 # or pipekernel.load("data")
    x = ds.train.data.reshape(-1, 3, 32, 32)  # numpy, viewing the session's memory
    pipekernel.timings()                      # the timing records, as dicts

One session per process: variables (%set), datasets and timing records
are shared by %pk, %%pk and the functions here. Stage errors raise the
classes of pipekernel.errors (ChecksumError, ... all StageError).

The compiled part (pipekernel._core) is imported on first use, so this
package's papermill support loads without it.
"""
import re as _re

from .errors import *  # noqa: F401,F403
from .errors import StageError  # noqa: F401

_SAFE = _re.compile(r"[\w@%+=:,./-]+", _re.ASCII)
_API = ("run", "load", "dataset", "timings", "interrupt", "add_timing", "magics", "Dataset",
        "Split", "IMAGE_BYTES")


def quote(text):
    """text as one word of the magic language, e.g. for a path in
    pipekernel.run(f"%md5 {quote(path)}"): as it is when it holds only
    letters, digits and @%+=:,./-_, else single-quoted (nothing inside is
    expanded)."""
    text = str(text)
    if text and _SAFE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def __getattr__(name):
    if name == "__version__":
        from . import _core
        return _core.version
    if name in _API:
        from . import _api
        return getattr(_api, name)
    raise AttributeError(f"module 'pipekernel' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))


def load_ipython_extension(ipython):
    """%load_ext pipekernel: adds the %pk line magic and the %%pk cell magic."""
    from .magics import PipekernelMagics
    ipython.register_magics(PipekernelMagics)


def unload_ipython_extension(ipython):
    pass
