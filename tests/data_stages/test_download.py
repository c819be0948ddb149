"""%download from a real nginx on loopback, from file:// URLs and, for the
fault cases nginx cannot play (500 then 200, a cut connection, a server
ignoring Range), from a small fault-injecting HTTP server."""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pkutil import PK_BIN, run_cli


def md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(small_data, nginx):
    d, tgz = small_data
    shutil.copy(tgz, nginx.root / tgz.name)
    shutil.copy(d / "MANIFEST.md5", nginx.root / "MANIFEST.md5")
    big = nginx.root / "big.bin"
    if not big.exists():
        big.write_bytes(os.urandom(8 << 20))
    return nginx, tgz, md5(tgz)


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".part") or ".pk-tmp" in p.name]


def test_download_nginx_md5(served, tmp_path):
    ng, tgz, h = served
    to = tmp_path / "c.tgz"
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {to} --md5 {h}", check=True)
    assert to.read_bytes() == tgz.read_bytes()
    assert "download:" in p.stdout and h in p.stdout
    assert leftovers(tmp_path) == []


def test_download_default_name(served, tmp_path):
    ng, tgz, h = served
    run_cli(f"%download {ng.url}/{tgz.name}?x=1", cwd=tmp_path, check=True)
    assert md5(tmp_path / tgz.name) == h


def test_download_md5_mismatch_keeps_nothing(served, tmp_path):
    ng, tgz, h = served
    bad = "ffffffffffffffffffffffffffffffff"
    to = tmp_path / "c.tgz"
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {to} --md5 {bad}")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and bad in p.stderr and h in p.stderr
    assert os.listdir(tmp_path) == []


def tree_of(d):
    return {str(q.relative_to(d)): (q.read_bytes() if q.is_file() and not q.is_symlink() else None)
            for q in d.rglob("*")}


@pytest.mark.parametrize("dest", ["new", "unrelated files", "an earlier extraction"])
def test_download_md5_mismatch_undoes_the_extraction(served, tmp_path, dest):
    """The members came from bytes that failed the check: they go with the
    tarball, and DIR is as it was (files they replaced come back; DIR itself
    goes if the run made it)."""
    ng, tgz, h = served
    ex = tmp_path / "w"
    b = ex / "cifar-10-batches-py"
    if dest == "unrelated files":
        b.mkdir(parents=True)
        (b / "notes.txt").write_text("mine")
        (ex / "other.txt").write_text("mine too")
    elif dest == "an earlier extraction":  # same names, other bytes
        b.mkdir(parents=True)
        for n in ("data_batch_1", "test_batch", "readme.html"):
            (b / n).write_bytes(b"the earlier " + n.encode())
        (b / "batches.meta").symlink_to("readme.html")
    before = tree_of(ex) if ex.exists() else None
    bad = "f" * 32
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {tmp_path / 'c.tgz'} --md5 {bad} --extract {ex}")
    assert p.returncode == 1 and "ChecksumError" in p.stderr
    assert "what was extracted from it is undone too" in p.stderr
    assert not (tmp_path / "c.tgz").exists() and leftovers(tmp_path) == []
    if before is None:
        assert not ex.exists()
    else:
        assert tree_of(ex) == before
        if dest == "an earlier extraction":
            assert os.readlink(b / "batches.meta") == "readme.html"


def test_download_md5_ok_replaces_an_earlier_extraction(served, tmp_path):
    """With the md5 right, the members replace what was there and nothing
    kept aside for an undo is left behind."""
    ng, tgz, h = served
    ex = tmp_path / "w"
    b = ex / "cifar-10-batches-py"
    b.mkdir(parents=True)
    (b / "data_batch_1").write_bytes(b"the earlier one")
    (b / "batches.meta").symlink_to("readme.html")
    run_cli(f"%download {ng.url}/{tgz.name} --to {tmp_path / 'c.tgz'} --md5 {h} --extract {ex} "
            f"--verify {ng.root / 'MANIFEST.md5'}", check=True)
    src = tgz.parent / "cifar-10-batches-py"
    assert sorted(q.name for q in b.iterdir()) == sorted(q.name for q in src.iterdir())
    for q in src.iterdir():
        assert not (b / q.name).is_symlink() and (b / q.name).read_bytes() == q.read_bytes()


def test_download_verify_sees_the_last_of_two_same_named_members(served, tmp_path):
    """A tar may hold one name twice; the disk holds the later one, and the
    hashes taken while extracting must be that one's too."""
    import io
    import tarfile
    ng, _, _ = served
    first, second = b"first version\n", b"second version, on disk\n"
    arc = ng.root / "twice.tar"
    with tarfile.open(arc, "w") as t:
        for data in (first, second):
            ti = tarfile.TarInfo("d/a.txt")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    man = tmp_path / "M.md5"
    for data, ok in ((first, False), (second, True)):
        man.write_text(f"{hashlib.md5(data).hexdigest()}  d/a.txt\n")
        ex = tmp_path / f"w{int(ok)}"
        p = run_cli(f"%download {ng.url}/twice.tar --to {tmp_path / 't.tar'} --extract {ex} --verify {man}")
        assert (ex / "d/a.txt").read_bytes() == second
        if ok:
            assert p.returncode == 0 and "all OK" in p.stdout, p.stderr
        else:
            assert p.returncode == 1 and "1 mismatching" in p.stderr, p.stdout + p.stderr
        (tmp_path / "t.tar").unlink()


def test_download_http_errors(served, tmp_path):
    ng, tgz, h = served
    p = run_cli(f"%download {ng.url}/nope.tgz --to {tmp_path / 'n'}")
    assert p.returncode == 1 and "HTTPError" in p.stderr and "404" in p.stderr
    p = run_cli(f"%download {ng.url}/error500 --to {tmp_path / 'e'} --retries 1")
    assert p.returncode == 1 and "HTTPError" in p.stderr and "500" in p.stderr
    assert "retry 1 of 1" in p.stderr
    port_closed = ng.port + 1 if ng.port < 65535 else ng.port - 1
    p = run_cli(f"%download http://127.0.0.1:{port_closed}/x --to {tmp_path / 'c'} --retries 0")
    assert p.returncode == 1 and "NetworkError" in p.stderr
    assert os.listdir(tmp_path) == []


def test_download_credentials_not_shown(served, tmp_path):
    ng, tgz, h = served
    p = run_cli(f"%download http://user:s3cretpw@127.0.0.1:{ng.port}/nope?token=abcsecret --to {tmp_path / 'x'}")
    assert p.returncode == 1
    assert "s3cretpw" not in p.stderr + p.stdout and "abcsecret" not in p.stderr + p.stdout


def test_download_https_verified(served, tmp_path):
    ng, tgz, h = served
    # TLS is verified by default: a self-signed certificate is refused ...
    p = run_cli(f"%download {ng.tls_url}/{tgz.name} --to {tmp_path / 'x'} --retries 0")
    assert p.returncode == 1 and "TLSError" in p.stderr, p.stderr
    assert os.listdir(tmp_path) == []
    # ... and accepted with --cacert naming it
    run_cli(f"%download {ng.tls_url}/{tgz.name} --to {tmp_path / 'x'} --md5 {h} --cacert {ng.cacert}",
            check=True)
    assert md5(tmp_path / "x") == h


def test_download_file_url(small_data, tmp_path):
    d, tgz = small_data
    h = md5(tgz)
    to = tmp_path / "f.tgz"
    run_cli(f"%download file://{tgz} --to {to} --md5 {h}", check=True)
    assert md5(to) == h
    p = run_cli(f"%download file://{tmp_path}/missing.tgz --to {tmp_path / 'm'}")
    assert p.returncode == 1 and "missing.tgz" in p.stderr
    p = run_cli(f"%download ftp://127.0.0.1/x --to {tmp_path / 'g'}")
    assert p.returncode == 1


def test_download_resume_with_range(served, tmp_path):
    ng, tgz, h = served
    to = tmp_path / "c.tgz"
    raw = tgz.read_bytes()
    (tmp_path / "c.tgz.part").write_bytes(raw[: len(raw) // 3])
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {to} --md5 {h} --resume", check=True)
    assert "resuming" in p.stdout
    assert md5(to) == h and leftovers(tmp_path) == []
    log = (ng.base / "logs" / "access.log").read_text()
    assert " 206 " in log


def test_download_fused(served, tmp_path):
    ng, tgz, h = served
    to, ex = tmp_path / "c.tgz", tmp_path / "work"
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {to} --md5 {h} --extract {ex} "
                f"--verify {ng.root / 'MANIFEST.md5'}", check=True)
    assert md5(to) == h
    assert "extract:" in p.stdout and "verify: 5 files" in p.stdout and "all OK" in p.stdout
    # every member was hashed as it was written: no second pass, and no rate of nothing
    assert re.search(r"verify: 5 files, [\d.]+ MB hashed while extracting, all OK", p.stdout)
    d = tgz.parent / "cifar-10-batches-py"
    for f in d.iterdir():
        assert (ex / "cifar-10-batches-py" / f.name).read_bytes() == f.read_bytes()


def test_download_fused_verify_finds_mismatch(served, tmp_path):
    ng, tgz, h = served
    man = tmp_path / "M.md5"
    lines = (ng.root / "MANIFEST.md5").read_text().splitlines()
    lines[0] = "0" * 32 + lines[0][32:]
    man.write_text("\n".join(lines) + "\n" + "d41d8cd98f00b204e9800998ecf8427e  cifar-10-batches-py/absent\n")
    p = run_cli(f"%download {ng.url}/{tgz.name} --to {tmp_path / 'c.tgz'} --extract {tmp_path / 'w'} "
                f"--verify {man}")
    assert p.returncode == 1 and "ChecksumError" in p.stderr
    assert "1 missing, 1 mismatching" in p.stderr


def test_download_extract_refuses_hostile(served, tmp_path):
    import io
    import tarfile
    ng, _, _ = served
    evil = ng.root / "evil.tar"
    with tarfile.open(evil, "w") as t:
        ti = tarfile.TarInfo("../escape")
        ti.size = 4
        t.addfile(ti, io.BytesIO(b"evil"))
    p = run_cli(f"%download {ng.url}/evil.tar --to {tmp_path / 'e.tar'} --extract {tmp_path / 'w'}")
    assert p.returncode == 1 and "UnsafeInputError" in p.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "e.tar").exists()


def test_download_extract_zip_and_7zip_from_the_whole_file(served, tmp_path):
    """A zip's modes and links and a 7-Zip's header are at the end of the
    archive: --extract reads those from the completed file, under the same
    checks, and --verify still uses the md5 of each member as written."""
    import stat
    import zipfile
    ng, _, _ = served
    body = os.urandom(300000)
    arc = ng.root / "links.zip"
    with zipfile.ZipFile(arc, "w") as z:
        for name, kind, data in (("z/data.bin", 0o100640, body), ("z/link", 0o120777, b"data.bin")):
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = kind << 16
            z.writestr(zi, data, compress_type=zipfile.ZIP_DEFLATED)
    man = tmp_path / "M.md5"
    h = hashlib.md5(body).hexdigest()
    man.write_text(f"{h}  z/data.bin\n{h}  z/link\n")
    to, ex = tmp_path / "l.zip", tmp_path / "w"
    p = run_cli(f"%download {ng.url}/links.zip --to {to} --md5 {md5(arc)} --extract {ex} --verify {man}",
                check=True)
    assert "from the whole file" in p.stdout and "1 file into" in p.stdout, p.stdout
    assert re.search(r"verify: 2 files, .*0\.3 MB hashed while extracting\), all OK", p.stdout), p.stdout
    assert (ex / "z/data.bin").read_bytes() == body
    assert stat.S_IMODE((ex / "z/data.bin").stat().st_mode) == 0o640
    assert os.readlink(ex / "z/link") == "data.bin"
    assert md5(to) == md5(arc)
    # 7-Zip with a link out of DIR: the download is whole and right, so it stays;
    # the extraction is refused and, with --md5, undone
    seven = Path(__file__).resolve().parent.parent / "data/archives/link-out.7z"
    shutil.copy(seven, ng.root / "link-out.7z")
    to, ex = tmp_path / "o.7z", tmp_path / "w7"
    p = run_cli(f"%download {ng.url}/link-out.7z --to {to} --md5 {md5(seven)} --extract {ex}")
    assert p.returncode == 1 and "UnsafeInputError" in p.stderr and "leads out of" in p.stderr, p.stderr
    assert "is undone (2 files); the download itself is complete and right, and kept as" in p.stderr, p.stderr
    assert not ex.exists()
    assert md5(to) == md5(seven)
    assert not leftovers(tmp_path)


# ---- fault injection (faultserver.py) -------------------------------------
def test_retry_500_then_200(fault, small_data, tmp_path):
    _, tgz = small_data
    h = md5(tgz)
    p = run_cli(f"%download {fault.url}/flaky --to {tmp_path / 'c.tgz'} --md5 {h} --retries 3",
                check=True)
    assert fault.hits["/flaky"] == 3  # two 500s, then the body
    assert "retry 1 of 3" in p.stderr and "retry 2 of 3" in p.stderr
    assert p.stderr.count("retry") == 2
    assert md5(tmp_path / "c.tgz") == h and leftovers(tmp_path) == []


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("path", ["/cut", "/norange"])
def test_cut_mid_transfer_then_resumed(fault, small_data, tmp_path, fused, path):
    """The connection drops half way; the retry asks for the rest with a Range
    (/cut answers 206, /norange ignores it and sends everything again)."""
    d, tgz = small_data
    h = md5(tgz)
    extra = f"--extract {tmp_path / 'w'} --verify {d / 'MANIFEST.md5'}" if fused else ""
    p = run_cli(f"%download {fault.url}{path} --to {tmp_path / 'c.tgz'} --md5 {h} {extra}",
                check=True)
    assert md5(tmp_path / "c.tgz") == h and leftovers(tmp_path) == []
    assert fault.hits[path] == 2 and "retry 1 of 3" in p.stderr
    assert fault.ranges[1] == (path, f"bytes={len(tgz.read_bytes()) // 2}-")
    if fused:
        assert "all OK" in p.stdout
        for f in (d / "cifar-10-batches-py").iterdir():
            assert (tmp_path / "w/cifar-10-batches-py" / f.name).read_bytes() == f.read_bytes()


# ---- interrupts -----------------------------------------------------------
def interrupt_when(cmd, ready, cwd=None, timeout=60, after_signal=None):
    """Start `pipekernel run cmd`, SIGINT it once ready() is true (then call
    after_signal, if given)."""
    p = subprocess.Popen([str(PK_BIN), "run", cmd], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ready():
        assert p.poll() is None, "finished before it could be interrupted: " + p.stderr.read()
        assert time.time() - t0 < timeout
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    if after_signal:
        after_signal()
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_sigint_during_download(served, tmp_path):
    ng, _, _ = served
    to = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    rc, out, err = interrupt_when(f"%download {ng.url}/slow/big.bin --to {to}",
                                  lambda: part.exists() and part.stat().st_size > 0)
    assert rc == 130 and "KeyboardInterrupt" in err
    assert not to.exists()
    # the partial body stays under .part for --resume; continuing gives the whole file
    run_cli(f"%download {ng.url}/big.bin --to {to} --resume --md5 {md5(ng.root / 'big.bin')}", check=True)
    assert not part.exists()


def test_sigint_during_fused_download_with_md5_undoes(served, tmp_path):
    """With --md5 an unfinished download's members cannot be trusted: the
    interrupt puts DIR back as it was (an earlier extraction included)."""
    ng, tgz, h = served
    to, ex = tmp_path / "c.tgz", tmp_path / "w"
    b = ex / "cifar-10-batches-py"
    b.mkdir(parents=True)
    for n in ("batches.meta", "data_batch_1", "readme.html"):
        (b / n).write_bytes(b"the earlier " + n.encode())
    before = tree_of(ex)
    part = tmp_path / "c.tgz.part"
    # interrupt once the first member (data_batch_1) has replaced the earlier one
    rc, out, err = interrupt_when(
        f"%download {ng.url}/slow/{tgz.name} --to {to} --md5 {h} --extract {ex}",
        lambda: (b / "data_batch_1").stat().st_size > 1000)
    assert rc == 130 and "KeyboardInterrupt" in err
    assert "is undone" in err
    assert tree_of(ex) == before
    assert not to.exists() and part.exists()  # kept for --resume


def test_sigint_during_fused_download(served, tmp_path):
    ng, tgz, _ = served
    to, ex = tmp_path / "c.tgz", tmp_path / "w"
    rc, out, err = interrupt_when(
        f"%download {ng.url}/slow/{tgz.name} --to {to} --extract {ex}",
        lambda: (tmp_path / "c.tgz.part").exists() and (tmp_path / "c.tgz.part").stat().st_size > 300000)
    assert rc == 130 and "KeyboardInterrupt" in err
    assert not to.exists()
    for f in ex.rglob("*"):
        assert ".pk-tmp" not in f.name


def test_sigint_during_extract(tmp_path):
    import tarfile
    import zlib
    # a 3 GB member of one byte over and over, a few MB compressed: slow to write
    # (not zeros, which are written as holes), quick to build; far past the
    # expansion bound, which --max-ratio 0 lifts here
    arc = tmp_path / "zeros.tar.gz"
    ti = tarfile.TarInfo("zeros.bin")
    ti.size = 3 << 30
    co = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"\x01" * (1 << 20)
    with open(arc, "wb") as f:
        f.write(co.compress(ti.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(ti.size >> 20):
            f.write(co.compress(chunk))
        f.write(co.compress(bytes(1024)) + co.flush())
    out = tmp_path / "out"

    def writing():
        return out.exists() and any(p.stat().st_size > (1 << 20) for p in out.iterdir())
    rc, _, err = interrupt_when(f"%extract {arc} --to {out} --max-ratio 0", writing)
    assert rc == 130 and "KeyboardInterrupt" in err
    assert not out.exists()  # the member cut short is removed, and the DIR the run made


def test_sigint_while_extract_waits_for_input(small_data, tmp_path):
    """%extract blocked reading a pipe that has sent half the archive: the
    interrupt still ends it, and what is under a final name is complete."""
    d, tgz = small_data
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
    rc, _, err = interrupt_when(f"%extract {fifo} --to {dest}", dest.exists, after_signal=go.set)
    t.join()
    assert rc == 130 and "KeyboardInterrupt" in err, err
    want = {ln[34:]: ln[:32] for ln in (d / "MANIFEST.md5").read_text().splitlines()}
    for p in dest.rglob("*"):
        assert ".pk-tmp" not in p.name
        if p.is_file():
            assert md5(p) == want[str(p.relative_to(dest))]


def test_sigint_during_verify(tmp_path):
    # a 40 GB sparse file: reads fast, no disk used, takes long enough to hash
    big = tmp_path / "root" / "sparse.bin"
    big.parent.mkdir()
    with open(big, "wb") as f:
        f.truncate(40 << 30)
    man = tmp_path / "M.md5"
    man.write_text("00000000000000000000000000000000  sparse.bin\n")
    t0 = time.time()
    rc, out, err = interrupt_when(f"%verify {man} --root {big.parent}", lambda: time.time() - t0 > 1.0)
    assert rc == 130 and "KeyboardInterrupt" in err and "interrupted" in err
    assert "mismatch" not in out
