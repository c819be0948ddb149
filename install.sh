#!/usr/bin/env bash
# install.sh -- set up pipekernel on a Debian/Ubuntu machine, idempotently:
#   1. Debian packages (build libraries, test servers, Chromium, numpy/torch)
#   2. a Python venv in .venv with Jupyter and the test tools, and
#      .venv-numpy2 (numpy 2, a writer for the load tests)
#   3. build (make DEVELOPER=0), and the Python package (python/: the
#      IPython extension %pk and `import pipekernel`) into .venv
#   4. the "Pipeline (C)" kernelspec, for this user (or --prefix DIR)
#   5. the demo notebook executed headless on a generated dataset
#
# Options: --prefix DIR   install the kernelspec under DIR (e.g. a venv)
#          --no-apt       skip step 1 (you installed the packages yourself)
#          --no-demo      skip step 5
set -euo pipefail
cd "$(dirname "$0")"

PREFIX_ARG=""
DO_APT=1
DO_DEMO=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX_ARG="$2"; shift 2 ;;
    --no-apt) DO_APT=0; shift ;;
    --no-demo) DO_DEMO=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

# Build libraries (-dev), the toolchain, and what the tests run for real.
APT_BUILD="build-essential pkg-config libzmq3-dev libjansson-dev libssl-dev
  libcurl4-openssl-dev libarchive-dev uuid-dev libpng-dev zlib1g-dev libisal-dev
  libopenblas-dev libexpat1-dev libxxhash-dev python3-dev"
APT_TEST="clang libclang-rt-14-dev llvm valgrind nginx radosgw ceph-mon ceph-osd
  chromium python3 python3-venv python3-pip python3-numpy python3-torch python3-zmq
  python3-pandas
  openssl curl ca-certificates"

step "1/5 system packages"
if [ "$DO_APT" = 1 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    missing=""
    for p in $APT_BUILD $APT_TEST; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
      echo "installing:$missing"
      $SUDO apt-get update -qq
      # nginx's and ceph's packages must not start system services here
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    else
      echo "all Debian packages present"
    fi
  else
    echo "no apt-get on this machine. Install the equivalents of:"
    echo "  $APT_BUILD" | tr -s ' \n' ' '; echo
    echo "  $APT_TEST" | tr -s ' \n' ' '; echo
    echo "then run ./install.sh --no-apt"
    exit 1
  fi
else
  echo "skipped (--no-apt)"
fi

step "2/5 Python environments (.venv: Jupyter, test tools; .venv-numpy2)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -c "import jupyterlab, nbconvert, nbclient, jupyter_client; print('jupyterlab', jupyterlab.__version__)"
# numpy 2 in a venv of its own (Debian's is 1.x): the load tests write
# batch files with it, as users on numpy 2 do.
if [ ! -x .venv-numpy2/bin/python ]; then
  "$PY" -m venv .venv-numpy2
fi
.venv-numpy2/bin/python -m pip install -q --disable-pip-version-check "numpy>=2,<3"
.venv-numpy2/bin/python -c "import numpy; print('numpy (writer for the load tests)', numpy.__version__)"

step "3/5 build (the kernel; the Python package into .venv)"
make -j"$(nproc)" DEVELOPER=0 PYTHON=.venv/bin/python
# python/setup.py builds the extension with `make python` in the same build/
PIPEKERNEL_BUILD="$(pwd)/build" PIPEKERNEL_JOBS="$(nproc)" \
  .venv/bin/python -m pip install -q --disable-pip-version-check ./python
.venv/bin/python -c "import pipekernel; print('pipekernel for Python', pipekernel.__version__)"

step "4/5 kernelspec \"Pipeline (C)\""
if [ -n "$PREFIX_ARG" ]; then
  make DEVELOPER=0 PYTHON=.venv/bin/python PREFIX="$PREFIX_ARG" KERNEL_PREFIX="$PREFIX_ARG" install
else
  make DEVELOPER=0 PYTHON=.venv/bin/python install
fi
.venv/bin/jupyter kernelspec list | grep pipekernel || true

step "5/5 demo notebook, executed headless"
if [ "$DO_DEMO" = 1 ] && [ -f notebooks/cifar10_pipeline.ipynb ]; then
  out=build/notebooks
  mkdir -p "$out"
  # the dataset and the run record go under build/, not beside the notebook
  WORK="$(pwd)/$out/cifar10-work" .venv/bin/jupyter nbconvert --execute --to notebook \
    --ExecutePreprocessor.kernel_name=pipekernel \
    --ExecutePreprocessor.timeout=1800 --output-dir "$out" notebooks/cifar10_pipeline.ipynb
  .venv/bin/jupyter nbconvert --to html --output-dir "$out" "$out/cifar10_pipeline.ipynb"
  echo "executed notebook: $(pwd)/$out/cifar10_pipeline.ipynb"
  echo "HTML:              $(pwd)/$out/cifar10_pipeline.html"
else
  echo "skipped"
fi

echo
echo "done. Start JupyterLab with: .venv/bin/jupyter lab   (kernel: \"Pipeline (C)\";"
echo "      or any Python 3 notebook with %load_ext pipekernel)"
echo "Run the tests with:          make test"
