"""%mkdata, %md5, %verify, %extract, %download through `pipekernel run` and the kernel."""
import hashlib
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pkutil import PK_BIN, ROOT, execute, run_cli, stdout_of

sys.path.insert(0, str(ROOT / "tests" / "load"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifargen  # noqa: E402


NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FILES = ["data_batch_1", "data_batch_2", "test_batch", "batches.meta", "readme.html"]


def md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def no_temp_files(d):
    return [p for p in Path(d).rglob("*") if ".tmp" in p.name or "pk-tmp" in p.name]


# ------------------------------------------------------------------ mkdata
def test_mkdata_layout_pickles_and_manifest(small_data):
    d, tgz = small_data
    b = d / "cifar-10-batches-py"
    assert sorted(os.listdir(b)) == sorted(FILES)
    for k, name in enumerate(["data_batch_1", "data_batch_2", "test_batch"]):
        raw = (b / name).read_bytes()
        assert raw[:2] == b"\x80\x02"
        e = pickle.loads(raw, encoding="latin1")
        assert list(e.keys()) == ["batch_label", "labels", "data", "filenames"]
        assert e["batch_label"] == ("testing batch 1 of 1" if name == "test_batch"
                                    else f"training batch {k + 1} of 2")
        assert isinstance(e["data"], np.ndarray) and e["data"].dtype == np.uint8
        assert e["data"].shape == (500, 3072) and e["data"].flags.c_contiguous
        assert len(e["labels"]) == 500 and all(0 <= v <= 9 for v in e["labels"])
        assert len(set(e["labels"])) == 10
        assert all(isinstance(f, str) and f.endswith(".png") for f in e["filenames"])
        eb = pickle.loads(raw, encoding="bytes")
        assert list(eb.keys()) == [b"batch_label", b"labels", b"data", b"filenames"]
        assert np.array_equal(eb[b"data"], e["data"])
        # byte for byte the original layout (the reference writer of the load tests)
        assert cifargen.py2_batch_bytes(e["batch_label"], e["labels"], e["data"],
                                        e["filenames"]) == raw
        with pytest.raises(UnicodeDecodeError):  # like the originals
            pickle.loads(raw)
        # images are not constant noise: per-image spread
        assert e["data"].std(axis=1).mean() > 20
    meta = pickle.loads((b / "batches.meta").read_bytes(), encoding="latin1")
    assert meta == {"num_cases_per_batch": 500, "label_names": NAMES, "num_vis": 3072}
    assert (b / "batches.meta").read_bytes() == cifargen.py2_meta_bytes(per_batch=500)
    assert (b / "readme.html").read_bytes().startswith(b"<meta HTTP-EQUIV=\"REFRESH\"")
    lines = (d / "MANIFEST.md5").read_text().splitlines()
    assert len(lines) == 5
    for ln in lines:
        h, path = ln.split("  ", 1)
        assert path.startswith("cifar-10-batches-py/") and md5(d / path) == h
    with tarfile.open(tgz) as t:
        names = t.getnames()
        assert names[0] == "cifar-10-batches-py"
        assert sorted(names[1:]) == sorted("cifar-10-batches-py/" + f for f in FILES)
        for f in FILES:
            assert t.extractfile("cifar-10-batches-py/" + f).read() == (b / f).read_bytes()
    assert not no_temp_files(d)


def test_mkdata_deterministic_and_no_gzip(tmp_path, small_data):
    d, _ = small_data
    a = tmp_path / "a"
    r = run_cli(f"%mkdata {a} --train-batches 2 --images-per-batch 500 --seed 3 --no-gzip")
    assert r.returncode == 0, r.stderr
    assert (a / "MANIFEST.md5").read_text() == (d / "MANIFEST.md5").read_text()
    assert (a / "cifar-10-python.tar").exists() and not (a / "cifar-10-python.tar.gz").exists()
    with tarfile.open(a / "cifar-10-python.tar", "r:") as t:
        assert len(t.getnames()) == 6
    b = tmp_path / "b"
    run_cli(f"%mkdata {b} --train-batches 1 --images-per-batch 100 --seed 4", check=True)
    assert md5(b / "cifar-10-batches-py/test_batch") != md5(a / "cifar-10-batches-py/test_batch")


def test_mkdata_then_load(small_data):
    d, _ = small_data
    r = run_cli(f"%load {d}", "%meta")
    assert r.returncode == 0, r.stderr
    assert "train: 2 files, 1000 images" in r.stdout
    assert "test: 1 file, 500 images" in r.stdout


def test_mkdata_bad_options(tmp_path):
    r = run_cli(f"%mkdata {tmp_path}/x --train-batches -1")
    assert r.returncode != 0 and "train-batches" in r.stderr
    r = run_cli(f"%mkdata {tmp_path}/x --gzip --no-gzip")
    assert r.returncode != 0 and "exclude" in r.stderr


# ------------------------------------------------------------------ md5
def test_md5(small_data):
    _, tgz = small_data
    h = md5(tgz)
    r = run_cli(f"%md5 {tgz}")
    assert r.returncode == 0 and h in r.stdout and "integrity:" in r.stdout
    r = run_cli(f"%md5 {tgz} --expect {h.upper()}")
    assert r.returncode == 0 and "md5 OK" in r.stdout
    bad = "0" * 32
    r = run_cli(f"%md5 {tgz} --expect {bad}")
    assert r.returncode != 0
    assert "ChecksumError" in r.stderr and bad in r.stderr and h in r.stderr
    r = run_cli(f"%md5 {tgz} --expect xyz")
    assert r.returncode != 0 and "32 hex digits" in r.stderr
    r = run_cli("%md5 /nonexistent/file")
    assert r.returncode != 0 and "FileNotFoundError" in r.stderr


# ------------------------------------------------------------------ verify
def test_verify_ok_and_problems(small_data, tmp_path):
    d, _ = small_data
    r = run_cli(f"%verify {d}/MANIFEST.md5")
    assert r.returncode == 0, r.stderr
    assert "verify: 5 files" in r.stdout and "all OK" in r.stdout
    w = tmp_path / "w"
    shutil.copytree(d / "cifar-10-batches-py", w / "cifar-10-batches-py")
    (w / "cifar-10-batches-py/readme.html").unlink()
    (w / "cifar-10-batches-py/stray.bin").write_bytes(b"x")
    with open(w / "cifar-10-batches-py/data_batch_2", "r+b") as f:
        f.seek(1000)
        f.write(b"\xff\xfe")
    (w / "unrelated.txt").write_text("not covered by the manifest's folders")
    r = run_cli(f"%verify {d}/MANIFEST.md5 --root {w} --jobs 2")
    assert r.returncode != 0
    out = r.stdout
    assert "missing" in out and "cifar-10-batches-py/readme.html" in out
    assert "extra" in out and "cifar-10-batches-py/stray.bin" in out
    assert "mismatch" in out and "cifar-10-batches-py/data_batch_2" in out
    assert "unrelated.txt" not in out
    assert "1 missing, 1 mismatching, 0 unreadable, 1 extra" in out
    assert "ChecksumError" in r.stderr


@pytest.mark.parametrize("text,needle", [
    ("nothex  a\n", "line of"),
    ("g" * 32 + "  a\n", ":1: expected 32 hex digits"),
    ("0" * 32 + " abc\n", "two spaces"),
    ("\n# comment\n" + "0" * 32 + "  ../a\n", ":3: path \"../a\""),
    ("0" * 32 + "  /etc/passwd\n", "absolute"),
    ("0" * 32 + "  a\n" + "1" * 32 + "  a\n", ":2: \"a\" is listed twice (also on line 1)"),
])
def test_verify_bad_manifest(tmp_path, text, needle):
    m = tmp_path / "M.md5"
    m.write_text(text)
    r = run_cli(f"%verify {m}")
    assert r.returncode != 0
    assert needle in r.stderr


# ------------------------------------------------------------------ extract
def test_extract_roundtrip(small_data, tmp_path):
    d, tgz = small_data
    for inflater in ("auto", "libarchive"):
        out = tmp_path / inflater
        r = run_cli(f"%extract {tgz} --to {out} --inflater {inflater}")
        assert r.returncode == 0, r.stderr
        assert "extract:" in r.stdout and "5 files in" in r.stdout
        for f in FILES:
            assert (out / "cifar-10-batches-py" / f).read_bytes() == \
                (d / "cifar-10-batches-py" / f).read_bytes()
        assert not no_temp_files(out)
        r = run_cli(f"%verify {d}/MANIFEST.md5 --root {out}")
        assert r.returncode == 0, r.stdout


def _tar(path, members, gz=True):
    with tarfile.open(path, "w:gz" if gz else "w") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _info(name, type_=tarfile.REGTYPE, size=0, linkname=""):
    i = tarfile.TarInfo(name)
    i.type = type_
    i.size = size
    i.linkname = linkname
    i.mode = 0o644
    return i


def _hostile_cases(tmp):
    outside = tmp / "outside"
    ok = (_info("ok.txt", size=3), b"ok\n")
    return {
        "dotdot": ([ok, (_info("../outside/evil", size=4), b"evil")], "contains \"..\""),
        "absolute": ([(_info(str(outside / "abs"), size=4), b"evil")], "absolute path"),
        "symlink-out": ([(_info("link", tarfile.SYMTYPE, linkname=str(outside)), None),
                         (_info("link/evil", size=4), b"evil")], "leads out of"),
        "symlink-dotdot": ([(_info("link", tarfile.SYMTYPE, linkname="../outside"), None),
                            (_info("link/evil", size=4), b"evil")], "leads out of"),
        "write-through-symlink": ([(_info("sub", tarfile.DIRTYPE), None),
                                   (_info("link", tarfile.SYMTYPE, linkname="sub"), None),
                                   (_info("link/evil", size=4), b"evil")], "through a symlink"),
        "hardlink-out": ([(_info("hl", tarfile.LNKTYPE, linkname="../outside/secret"), None)],
                         "leads out of"),
        "hardlink-abs": ([(_info("hl", tarfile.LNKTYPE, linkname=str(outside / "secret")), None)],
                         "leads out of"),
        "device": ([(_info("dev", tarfile.CHRTYPE), None)], "device node"),
        "fifo": ([(_info("fifo", tarfile.FIFOTYPE), None)], "fifo"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out", "symlink-dotdot",
                                  "write-through-symlink", "hardlink-out", "hardlink-abs",
                                  "device", "fifo"])
def test_extract_hostile(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    members, needle = _hostile_cases(tmp_path)[case]
    arc = tmp_path / "evil.tar.gz"
    _tar(arc, members)
    dest = tmp_path / "dest"
    before = sorted(p.name for p in outside.iterdir())
    r = run_cli(f"%extract {arc} --to {dest}")
    assert r.returncode != 0
    assert "UnsafeInputError" in r.stderr and needle in r.stderr, r.stderr
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret").read_text() == "secret"
    assert not (tmp_path / "evil").exists()
    assert not no_temp_files(dest) if dest.exists() else True


def test_extract_member_claiming_terabytes(tmp_path):
    info = _info("huge.bin", size=5 << 40)  # 5 TiB
    hdr = info.tobuf(tarfile.GNU_FORMAT)
    arc = tmp_path / "huge.tar"
    arc.write_bytes(hdr + b"\0" * 65536)
    dest = tmp_path / "dest"
    r = run_cli(f"%extract {arc} --to {dest}")
    assert r.returncode != 0
    assert "LimitError" in r.stderr and "refused before writing" in r.stderr
    assert "huge.bin" in r.stderr
    assert not list(dest.rglob("*huge*"))


def test_extract_not_an_archive(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(b"\x1f\x8b" + os.urandom(1000))
    r = run_cli(f"%extract {p} --to {tmp_path}/d")
    assert r.returncode != 0 and "x.tar.gz" in r.stderr


# ------------------------------------------------------------------ download
def _serve(nginx, src, name):
    dst = nginx.root / name
    shutil.copyfile(src, dst)
    return f"{nginx.url}/{name}"


def test_download_nginx_fused(nginx, small_data, tmp_path):
    d, tgz = small_data
    url = _serve(nginx, tgz, "fused.tar.gz")
    h = md5(tgz)
    to = tmp_path / "dl" / "c.tgz"
    (tmp_path / "dl").mkdir()
    r = run_cli(f"%download {url} --to {to} --md5 {h} --extract {tmp_path}/x "
                f"--verify {d}/MANIFEST.md5")
    assert r.returncode == 0, r.stderr
    assert to.read_bytes() == tgz.read_bytes()
    assert "download:" in r.stdout and h in r.stdout
    assert "extract:" in r.stdout and "verify: 5 files" in r.stdout and "all OK" in r.stdout
    assert not (tmp_path / "dl" / "c.tgz.part").exists()
    # %verify after a download to WORK/cifar-10-python.tar.gz passes
    r = run_cli(f"%verify {d}/MANIFEST.md5 --root {tmp_path}/x")
    assert r.returncode == 0


def test_download_default_name_and_file_url(small_data, tmp_path):
    _, tgz = small_data
    r = run_cli(f"%download file://{tgz} --md5 {md5(tgz)}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cifar-10-python.tar.gz").read_bytes() == tgz.read_bytes()
    r = run_cli(f"%download file://{tmp_path}/missing.bin --to {tmp_path}/m")
    assert r.returncode != 0 and not (tmp_path / "m").exists()


def test_download_md5_mismatch_keeps_nothing(nginx, small_data, tmp_path):
    _, tgz = small_data
    url = _serve(nginx, tgz, "mm.tar.gz")
    bad = "f" * 32
    to = tmp_path / "mm.tgz"
    r = run_cli(f"%download {url} --to {to} --md5 {bad}")
    assert r.returncode != 0
    assert "ChecksumError" in r.stderr and bad in r.stderr and md5(tgz) in r.stderr
    assert not to.exists() and not Path(str(to) + ".part").exists()


def test_download_http_errors(nginx, tmp_path):
    r = run_cli(f"%download {nginx.url}/nope.bin --to {tmp_path}/n --retries 0")
    assert r.returncode != 0 and "HTTP 404" in r.stderr
    assert not (tmp_path / "n").exists() and not (tmp_path / "n.part").exists()
    r = run_cli(f"%download {nginx.url}/error500 --to {tmp_path}/e --retries 1")
    assert r.returncode != 0 and "HTTP 500" in r.stderr and "retry 1 of 1" in r.stderr
    r = run_cli(f"%download http://user:s3cretpw@127.0.0.1:1/x --to {tmp_path}/c --retries 0")
    assert r.returncode != 0 and "s3cretpw" not in r.stderr + r.stdout


def test_download_retry_500_then_200(fault, small_data, tmp_path):
    _, tgz = small_data
    r = run_cli(f"%download {fault.url}/flaky --to {tmp_path}/f --md5 {md5(tgz)} --retries 3")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("retry") == 2 and fault.hits["/flaky"] == 3
    assert (tmp_path / "f").read_bytes() == tgz.read_bytes()


@pytest.mark.parametrize("path", ["/cut", "/norange"])
def test_download_cut_midway_then_resumes(fault, small_data, tmp_path, path):
    d, tgz = small_data
    r = run_cli(f"%download {fault.url}{path} --to {tmp_path}/c --md5 {md5(tgz)} "
                f"--extract {tmp_path}/x --verify {d}/MANIFEST.md5")
    assert r.returncode == 0, r.stderr
    assert "retry 1 of 3" in r.stderr and fault.hits[path] == 2
    if path == "/cut":
        assert fault.ranges[-1][1] == f"bytes={len(tgz.read_bytes()) // 2}-"
    assert (tmp_path / "c").read_bytes() == tgz.read_bytes()


def test_download_resume_flag(nginx, small_data, tmp_path):
    _, tgz = small_data
    url = _serve(nginx, tgz, "res.tar.gz")
    data = tgz.read_bytes()
    (tmp_path / "r.tgz.part").write_bytes(data[:len(data) // 3])
    r = run_cli(f"%download {url} --to {tmp_path}/r.tgz --resume --md5 {md5(tgz)}")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    assert (tmp_path / "r.tgz").read_bytes() == data


# ------------------------------------------------------------------ interrupts
def _interrupt(cell, ready, cwd=None, before_signal=None):
    """Run one cell, send SIGINT once ready() is true, return (rc, stdout, stderr)."""
    p = subprocess.Popen([str(PK_BIN), "run", cell], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=cwd)
    deadline = time.time() + 30
    while not ready() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, "finished before the interrupt"
    p.send_signal(signal.SIGINT)
    if before_signal:
        before_signal()
    out, err = p.communicate(timeout=60)
    return p.returncode, out.decode(), err.decode()


def test_sigint_download(nginx, tmp_path):
    big = nginx.root / "big.bin"
    big.write_bytes(os.urandom(8 << 20))
    to = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    rc, out, err = _interrupt(f"%download {nginx.url}/slow/big.bin --to {to}",
                              lambda: part.exists() and part.stat().st_size > 100000)
    assert rc != 0 and "KeyboardInterrupt" in err
    assert not to.exists()


def test_sigint_extract(small_data, tmp_path):
    _, tgz = small_data
    fifo = tmp_path / "arc.tar.gz"
    os.mkfifo(fifo)
    data = tgz.read_bytes()
    go = threading.Event()

    def feed():
        try:  # the interrupted reader may be gone before the first half is in
            with open(fifo, "wb") as f:
                f.write(data[:len(data) // 2])
                f.flush()
                go.wait(30)
                time.sleep(0.3)
                f.write(data[len(data) // 2:len(data) // 2 + 65536])
        except BrokenPipeError:
            pass

    t = threading.Thread(target=feed)
    t.start()
    dest = tmp_path / "dest"
    rc, out, err = _interrupt(f"%extract {fifo} --to {dest}", dest.exists,
                              before_signal=go.set)
    t.join()
    assert rc != 0 and "KeyboardInterrupt" in err, err
    assert not no_temp_files(dest)
    ref = {ln.split("  ")[1]: ln.split("  ")[0]
           for ln in (small_data[0] / "MANIFEST.md5").read_text().splitlines()}
    for p in dest.rglob("*"):  # whatever is under a final name is complete
        if p.is_file():
            assert md5(p) == ref[str(p.relative_to(dest))]


def test_sigint_verify(tmp_path):
    root = tmp_path / "v"
    root.mkdir()
    blob = root / "f000"
    blob.write_bytes(os.urandom(32 << 20))
    h = md5(blob)
    lines = [f"{h}  f000"]
    for i in range(1, 192):  # hard links: 6 GB to hash, 32 MB on disk
        os.link(blob, root / f"f{i:03d}")
        lines.append(f"{h}  f{i:03d}")
    (tmp_path / "M.md5").write_text("\n".join(lines) + "\n")
    rc, out, err = _interrupt(f"%verify {tmp_path}/M.md5 --root {root}", lambda: time.sleep(0.5) or True)
    assert rc != 0 and "KeyboardInterrupt" in err


# ------------------------------------------------------------------ kernel
def test_kernel_mkdata_md5_progress(kernel, tmp_path):
    km, kc = kernel
    reply, msgs = execute(kc, f"%mkdata {tmp_path}/k --train-batches 1 --images-per-batch 200\n"
                              f"%md5 {tmp_path}/k/cifar-10-python.tar.gz", timeout=120)
    assert reply["status"] == "ok", reply
    out = stdout_of(msgs)
    assert "mkdata:" in out and "integrity:" in out
    assert md5(tmp_path / "k/cifar-10-python.tar.gz") in out
    types = [m["msg_type"] for m in msgs]
    html = " ".join(str(m["content"].get("data", {}).get("text/html", ""))
                    for m in msgs if m["msg_type"] in ("display_data", "update_display_data"))
    assert "display_data" in types and "pk-progress" in html and "mkdata" in html
