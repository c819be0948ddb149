"""%load, %meta, %preview through `pipekernel run`, on CIFAR folders written
during the test by CPython + numpy (protocols 2-5, numpy 1 and 2 names), by a
real numpy 2 (.venv-numpy2, made by install.sh) and
by a byte-exact Python 2 style writer; hostile files from
tests/data/pickle/invalid. (The libFuzzer run of the reader is part of
`make test`: make fuzz-smoke.)"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pathlib import Path

from conftest import png_decode
from pkutil import ROOT, run_cli

INVALID = ROOT / "tests/data/pickle/invalid"


def sums(out):
    """{'train': (pixels_md5, labels_md5, files, images), ...} from %load --md5 output."""
    res = {}
    for m in re.finditer(r"^(train|test): (\d+) files?, (\d+) images.*\n  md5 pixels ([0-9a-f]{32})"
                         r"  labels ([0-9a-f]{32})", out, re.M):
        res[m.group(1)] = (m.group(4), m.group(5), int(m.group(2)), int(m.group(3)))
    return res


STYLES = [("py2", False, "str", False)] + [
    (p, np2, keys, scalars)
    for p in (2, 3, 4, 5) for np2 in (False, True)
    for keys, scalars in (("str", True), ("bytes", False))]


@pytest.mark.parametrize("style,np2,keys,scalars", STYLES,
                         ids=[f"{s}-{'np2' if n else 'np1'}-{k}{'-scalars' if sc else ''}"
                              for s, n, k, sc in STYLES])
def test_load_formats(tmp_path, gen, style, np2, keys, scalars):
    exp = gen.write_dataset(str(tmp_path), style, n_train=(100, 60), n_test=50, seed=11,
                            keys=keys, scalars=scalars, np2=np2)
    folder = tmp_path / "cifar-10-batches-py"
    if not np2:  # what numpy itself loads from these files
        seen = gen.numpy_view(str(folder))
        assert seen["train"] == exp["train"][:2] and seen["test"] == exp["test"][:2]
    if style == 2:  # the _codecs.encode latin-1 path is really exercised
        assert b"_codecs" in (folder / "data_batch_1").read_bytes()
    if np2:
        blob = (folder / "data_batch_1").read_bytes()
        assert b"numpy._core" in blob and b"numpy.core" not in blob
    p = run_cli(f"%load {tmp_path} --md5", check=True)
    got = sums(p.stdout)
    assert got["train"] == exp["train"][:2] + (2, 160)
    assert got["test"] == exp["test"][:2] + (1, 50)
    assert "classes: 10" in p.stdout


NUMPY2 = Path(os.environ.get("PK_NUMPY2_PYTHON", ROOT / ".venv-numpy2/bin/python"))


@pytest.fixture(scope="module")
def numpy2_sets(tmp_path_factory):
    """Folders written by a real numpy 2 (install.sh makes .venv-numpy2)."""
    assert NUMPY2.exists(), (f"{NUMPY2} is missing: ./install.sh makes it (a venv with numpy 2 "
                             "that writes the files for this test)")
    out = tmp_path_factory.mktemp("numpy2")
    p = subprocess.run([str(NUMPY2), str(ROOT / "tests/load/numpy2_writer.py"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert int(res["numpy"].split(".")[0]) == 2, res["numpy"]
    return out, res["cases"]


NUMPY2_CASES = [f"p{p}-{k}" for p in (2, 3, 4, 5)
                for k in ("int", "np64-bkeys", "arr64")] + ["p5-arr8"]


@pytest.mark.parametrize("case", NUMPY2_CASES)
def test_load_files_written_by_numpy2(numpy2_sets, case):
    out, cases = numpy2_sets
    folder = out / case / "cifar-10-batches-py"
    assert b"numpy._core" in (folder / "data_batch_1").read_bytes()
    p = run_cli(f"%load {out / case} --md5", "%meta " + str(out / case), check=True)
    got = sums(p.stdout)
    assert got["train"] == tuple(cases[case]["train"])
    assert got["test"] == tuple(cases[case]["test"])
    assert "automobile" in p.stdout


def test_py2_meta_is_158_bytes(gen):
    assert len(gen.py2_meta_bytes()) == 158


def test_numeric_order_and_folder_itself(tmp_path, gen):
    exp = gen.write_dataset(str(tmp_path), 4, n_train=(10,) * 11, n_test=None, folder=False)
    p = run_cli(f"%load {tmp_path} --split train --md5", check=True)
    got = sums(p.stdout)["train"]
    assert got == exp["train"][:2] + (11, 110)
    # lexical order (1, 10, 11, 2, ...) would give another checksum
    lex = sorted(f"data_batch_{i}" for i in range(1, 12))
    assert lex[1] == "data_batch_10"


def test_splits_and_errors(tmp_path, gen):
    exp = gen.write_dataset(str(tmp_path), "py2", n_train=(20,), n_test=30)
    p = run_cli(f"%load {tmp_path} --split test --md5", check=True)
    assert sums(p.stdout) == {"test": exp["test"][:2] + (1, 30)}
    # a second %load of the other split keeps the first
    p = run_cli(f"%load {tmp_path} --split test", f"%load {tmp_path} --split train",
                "%preview --split test --seed 3 --n 2", check=True)
    assert "test images" in p.stdout
    p = run_cli(f"%load {tmp_path} --split valid")
    assert p.returncode == 1 and "--split must be train, test or all" in p.stderr
    p = run_cli(f"%load {tmp_path}/nothing")
    assert p.returncode == 1 and "FileNotFoundError" in p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_cli(f"%load {empty}")
    assert p.returncode == 1 and "no data_batch_* or test_batch" in p.stderr
    p = run_cli("%preview")
    assert p.returncode == 1 and "no dataset loaded" in p.stderr


def hostile_cases():
    return sorted(d.name for d in INVALID.iterdir())


@pytest.mark.parametrize("case", hostile_cases())
def test_hostile_refused(tmp_path, gen, case):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "batches.meta").write_bytes(gen.py2_meta_bytes())
    shutil.copy(INVALID / case / "input.pkl", d / "data_batch_1")
    expect = (INVALID / case / "error").read_text().strip()
    if case == "empty":
        expect = "empty file"
    p = run_cli(f"%load {tmp_path}", "%echo alive")
    assert p.returncode == 1, (p.returncode, p.stderr)  # refused, not crashed
    assert expect in p.stderr, p.stderr
    assert "data_batch_1" in p.stderr
    assert "alive" not in p.stdout


def test_meta(tmp_path, gen):
    exp = gen.write_dataset(str(tmp_path), "py2", n_train=(100, 100), n_test=100, seed=5)
    p = run_cli(f"%meta {tmp_path}", check=True)
    assert "no images loaded" in p.stdout
    assert "automobile" in p.stdout
    disp = tmp_path / "disp"
    disp.mkdir()
    p = run_cli("--display-dir", str(disp), f"%load {tmp_path}", f"%meta {tmp_path}", check=True)
    tr = np.bincount(np.frombuffer(exp["train"][3], np.uint8), minlength=10)
    te = np.bincount(np.frombuffer(exp["test"][3], np.uint8), minlength=10)
    for k, name in enumerate(gen.CIFAR_NAMES):
        assert re.search(rf"^\s+{k}\s+{name}\s+{tr[k]}\s+{te[k]}\s+{tr[k] + te[k]}$", p.stdout, re.M), name
    html = next(disp.glob("*.html")).read_text()
    assert "<table" in html and "airplane" in html
    svg = next(disp.glob("*.svg")).read_text()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = [t.text for t in root.iter() if t.tag.endswith("text")]
    assert "truck" in texts and "train" in texts and "test" in texts
    pngs = sorted(disp.glob("*.png"))
    assert len(pngs) == 1
    w, h, ch, rows = png_decode(pngs[0].read_bytes())
    assert w > 300 and h > 200 and len(rows) == h


def test_preview(tmp_path, gen):
    exp = gen.write_dataset(str(tmp_path), 5, n_train=(50, 50), n_test=20, seed=9)
    outs = []
    for run in range(2):
        disp = tmp_path / f"d{run}"
        disp.mkdir()
        p = run_cli("--display-dir", str(disp), f"%load {tmp_path}", "%preview --seed 1234", check=True)
        outs.append((p.stdout.split("classes: 10 (batches.meta)\n")[1],
                     next(disp.glob("*.png")).read_bytes()))
    assert outs[0] == outs[1]  # reproducible with --seed
    out, png = outs[0]
    m = re.search(r"preview: train images ([\d ]+); seed 1234", out)
    idx = [int(x) for x in m.group(1).split()]
    assert len(idx) == 4 and len(set(idx)) == 4
    short = "plane car bird cat deer dog frog horse ship truck".split()
    labels = exp["train"][3]
    line = " ".join("%9s" % short[labels[i]] for i in idx)
    assert line + "\n" in out
    # the PNG is make_grid's 3x36x138 layout, grey padding, scaled x4
    w, h, ch, rows = png_decode(png)
    assert (w, h, ch) == (138 * 4, 36 * 4, 3)
    px = exp["train"][2]
    grid = np.full((36, 138, 3), 128, np.uint8)
    for k, i in enumerate(idx):
        grid[2:34, 34 * k + 2:34 * k + 34] = px[i].reshape(3, 32, 32).transpose(1, 2, 0)
    big = np.repeat(np.repeat(grid, 4, axis=0), 4, axis=1)
    got = np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, 3)
    assert np.array_equal(got, big)
    # another seed, another grid; no seed prints the one it used
    p = run_cli(f"%load {tmp_path}", "%preview --seed 1235", "%preview --split test --n 10 --scale 1",
                check=True)
    assert re.search(r"seed 1235", p.stdout)
    m = re.search(r"test images [\d ]+; seed (\d+) \(repeat with --seed \1\)", p.stdout)
    assert m
    p = run_cli(f"%load {tmp_path}", "%preview --n 21 --split test")
    assert p.returncode == 1 and "has 20 images" in p.stderr


def test_preview_meta_names(tmp_path, gen):
    """Non-standard label names are printed as batches.meta has them."""
    d = tmp_path / "cifar-10-batches-py"
    gen.write_dataset(str(tmp_path), 3, n_train=(10,), n_test=None, meta=False)
    names = ["c%d" % i for i in range(10)]
    (d / "batches.meta").write_bytes(gen.py2_meta_bytes(names))
    p = run_cli(f"%load {tmp_path}", "%preview --seed 5 --n 3", check=True)
    first = [ln for ln in p.stdout.splitlines() if re.match(r"\s+c\d", ln)]
    assert first and all(re.fullmatch(r"c\d", x) for x in first[0].split())


def test_md5_of_loaded_bytes_matches_hashlib(tmp_path, gen):
    exp = gen.write_dataset(str(tmp_path), "py2", n_train=(30, 30), n_test=30, seed=2)
    p = run_cli(f"%load {tmp_path} --md5", check=True)
    got = sums(p.stdout)
    assert got["train"][0] == hashlib.md5(exp["train"][2].tobytes()).hexdigest()
    assert got["test"][1] == hashlib.md5(exp["test"][3]).hexdigest()


def test_no_load_stage_waits_on_a_fifo(tmp_path, gen):
    """A batch file, or batches.meta, that is a FIFO: open(2) would wait for a
    writer and the kernel could not interrupt it. It is refused at once, saying
    what it is, and the next cell runs."""
    gen.write_dataset(str(tmp_path / "a"), 3, n_train=(20,), n_test=10, seed=1)
    gen.write_dataset(str(tmp_path / "b"), 3, n_train=(20,), n_test=10, seed=1)
    os.unlink(tmp_path / "a/cifar-10-batches-py/data_batch_1")
    os.mkfifo(tmp_path / "a/cifar-10-batches-py/data_batch_1")
    os.unlink(tmp_path / "b/cifar-10-batches-py/batches.meta")
    os.mkfifo(tmp_path / "b/cifar-10-batches-py/batches.meta")
    for cell, name in ((f"%load {tmp_path / 'a'}", "data_batch_1"),
                       (f"%load {tmp_path / 'b'}", "batches.meta"),
                       (f"%meta {tmp_path / 'b'}", "batches.meta")):
        p = run_cli(cell, timeout=30)
        assert p.returncode == 1, (cell, p.stdout, p.stderr)
        assert f"{name}: the file is a FIFO, not a regular file" in p.stderr, p.stderr


def test_class_names_with_control_bytes_are_shown_escaped(tmp_path, gen):
    """batches.meta comes from outside: a class name with a newline or a
    terminal escape is shown escaped in %meta's table and chart and in the
    names line of %preview."""
    gen.write_dataset(str(tmp_path), 3, n_train=(40,), n_test=10, seed=2)
    names = list(gen.CIFAR_NAMES)
    names[0] = "cat\nmeta: all fine\x1b[2J"
    meta = {"num_cases_per_batch": 40, "label_names": names, "num_vis": 3072}
    import pickle
    (tmp_path / "cifar-10-batches-py/batches.meta").write_bytes(pickle.dumps(meta, 3))
    disp = tmp_path / "disp"
    disp.mkdir()
    p = run_cli("--display-dir", str(disp), f"%load {tmp_path}", f"%meta {tmp_path}",
                "%preview --n 40 --seed 1 --split train", check=True)
    assert "cat\\x0ameta: all fine\\x1b[2J" in p.stdout, p.stdout
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", p.stdout), repr(p.stdout)
    svg = next(disp.glob("*.svg")).read_text()
    assert "\x1b" not in svg and "cat\\x0ameta: all" in svg
    html = next(disp.glob("*.html")).read_text()
    assert "\x1b" not in html and "cat\\x0ameta: all fine\\x1b[2J" in html


def xxh3_128_hex(b):
    """XXH3-128 of b in canonical (big-endian) hex, from Debian's libxxhash
    (the library %load links) through ctypes: XXH3_128bits returns the
    {low64, high64} pair, printed high half first as xxh128sum does."""
    import ctypes
    import ctypes.util

    class XXH128(ctypes.Structure):
        _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]

    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    lib.XXH3_128bits.restype = XXH128
    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    h = lib.XXH3_128bits(bytes(b), len(b))
    return f"{h.high64:016x}{h.low64:016x}"


def test_default_fingerprint_is_xxh3_128(tmp_path, gen):
    """The default fingerprint is XXH3-128 of the pixel bytes in file order
    and of the label bytes, named as such; --no-hash prints none, --md5 the
    md5s, and the two options exclude each other."""
    exp = gen.write_dataset(str(tmp_path), 4, n_train=(30, 20, 10), n_test=25, seed=3)
    p = run_cli(f"%load {tmp_path}", "%timings", check=True)
    m = re.search(r"^train: 3 files, 60 images.*\n  xxh3-128 pixels ([0-9a-f]{32})  labels ([0-9a-f]{32})",
                  p.stdout, re.M)
    assert m, p.stdout
    assert m.group(1) == xxh3_128_hex(exp["train"][2].tobytes())
    assert m.group(2) == xxh3_128_hex(bytes(exp["train"][3]))
    t = re.search(r"^test: 1 file, 25 images.*\n  xxh3-128 pixels ([0-9a-f]{32})  labels ([0-9a-f]{32})",
                  p.stdout, re.M)
    assert t and t.group(1) == xxh3_128_hex(exp["test"][2].tobytes())
    assert "md5 pixels" not in p.stdout and "xxh3-128" in p.stdout.split("stage timings")[1]
    p = run_cli(f"%load {tmp_path} --no-hash", check=True)
    assert "pixels" not in p.stdout and "train: 3 files, 60 images" in p.stdout
    p = run_cli(f"%load {tmp_path} --no-md5", check=True)  # the option's earlier name
    assert "pixels" not in p.stdout
    p = run_cli(f"%load {tmp_path} --md5 --no-hash")
    assert p.returncode == 1 and "exclude each other" in p.stderr
