"""pipekernel for Python: `pip install ./python` from a checkout of the
repository (pip >= 21.3 builds in place; the extension needs the stage
library's sources beside this folder).

The C extension pipekernel._core is built by the repository's Makefile
(`make python`, the same flags, libraries and CUDA detection as the kernel)
in the build folder PIPEKERNEL_BUILD (default: the repository's build/),
and copied into the wheel. Building needs what `make` needs (the -dev
packages install.sh lists) and the Python headers (python3-dev).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def version():
    text = (ROOT / "stages/lib/version.h").read_text()
    return re.search(r'#define PK_VERSION "([^"]+)"', text).group(1)


class MakeExtension(build_ext):
    def build_extension(self, ext):
        out = Path(os.environ.get("PIPEKERNEL_BUILD", ROOT / "build")).resolve()
        jobs = os.environ.get("PIPEKERNEL_JOBS", str(os.cpu_count() or 1))
        subprocess.run(["make", "-C", str(ROOT), f"-j{jobs}", f"O={out}", "DEVELOPER=0",
                        f"PYTHON={sys.executable}", "python"], check=True)
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "python/pipekernel/_core.so", target)


setup(
    name="pipekernel",
    version=version(),
    description="pipekernel's compiled CIFAR-10 pipeline stages in Python: "
                "an IPython extension (%pk) and numpy views of the loaded data",
    python_requires=">=3.10",
    packages=["pipekernel"],
    ext_modules=[Extension("pipekernel._core", sources=[])],
    cmdclass={"build_ext": MakeExtension},
    install_requires=["numpy"],
    extras_require={"frame": ["pandas"], "papermill": ["papermill"]},
    entry_points=(HERE / "entry_points.txt").read_text(),
    zip_safe=False,
)
