"""Fault injection for the data stages.

Download: a server that stalls mid-body, sends less than its Content-Length,
answers 5xx until the retries run out, dies mid-transfer, or answers a Range
request from the wrong byte (tests/data_stages/faultserver.py), each through the
plain and the fused (--extract/--verify) path.

Disk: %download, %extract and %mkdata writing into a small tmpfs that fills
up. The tmpfs is mounted in a private mount namespace (`unshare --mount`, with
`--map-root-user` when not root) around one `pipekernel run`, so nothing stays
mounted; when neither works the tests fail, they do not skip.

What must hold: a clear error naming the URL or path, a non-zero exit, nothing
partial under a final name, no temporary file left (except PATH.part after a
network error or a timeout, kept for --resume as docs/failures.md says)."""
import hashlib
import os
import sys
from pathlib import Path

import pytest

from pkutil import run_cli, run_small_fs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultserver import FaultServer  # noqa: E402

HERE = Path(__file__).resolve().parent
FUSED = pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])


def md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def temp_names(folder):
    return [str(p) for p in Path(folder).rglob("*")
            if p.name.endswith(".part") or ".pk-tmp" in p.name or ".tmp-" in p.name]


def only_complete_members(ex, small_data):
    """Every file under ex is a whole member of the archive; no temporary file."""
    src = small_data[0] / "cifar-10-batches-py"
    assert temp_names(ex) == []
    for f in Path(ex).rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (src / f.name).read_bytes(), f


def dl(url, to, ex, *extra):
    cell = f"%download {url} --to {to} " + " ".join(extra)
    return run_cli(cell + (f" --extract {ex}" if ex else ""))


# ------------------------------------------------------------------ download faults
@FUSED
def test_stall_times_out_then_resume(fault, small_data, tmp_path, fused):
    d, tgz = small_data
    body = tgz.read_bytes()
    to, part = tmp_path / "c.tgz", tmp_path / "c.tgz.part"
    ex = tmp_path / "x" if fused else None
    r = dl(f"{fault.url}/stall", to, ex, "--timeout 1 --retries 0")
    assert r.returncode == 1
    assert "TimeoutError" in r.stderr and f"{fault.url}/stall" in r.stderr
    assert "no data for 1 s (--timeout)" in r.stderr
    assert not to.exists()
    # the bytes received stay in PATH.part (docs/failures.md: kept after network errors)
    kept = part.read_bytes()
    assert 0 < len(kept) < len(body) and body.startswith(kept)
    if fused:
        only_complete_members(ex, small_data)
    # --resume continues from there on a server that answers
    r = dl(f"{fault.url}/ok", to, ex, f"--resume --md5 {md5(tgz)}",
           f"--verify {d}/MANIFEST.md5" if fused else "")
    assert r.returncode == 0, r.stderr
    assert f"resuming {part} at byte {len(kept)}" in r.stdout
    assert fault.ranges[-1] == ("/ok", f"bytes={len(kept)}-")
    assert to.read_bytes() == body and not part.exists()
    if fused:
        assert "all OK" in r.stdout
        only_complete_members(ex, small_data)
        assert len(list(ex.rglob("*_batch*"))) == 3


@FUSED
def test_stall_once_is_retried_with_range(fault, small_data, tmp_path, fused):
    d, tgz = small_data
    to = tmp_path / "c.tgz"
    ex = tmp_path / "x" if fused else None
    r = dl(f"{fault.url}/stall1", to, ex, f"--timeout 1 --md5 {md5(tgz)}",
           f"--verify {d}/MANIFEST.md5" if fused else "")
    assert r.returncode == 0, r.stderr
    assert "no data for 1 s (--timeout); retry 1 of 3" in r.stderr
    assert fault.ranges[1] == ("/stall1", f"bytes={len(tgz.read_bytes()) // 2}-")
    assert to.read_bytes() == tgz.read_bytes() and temp_names(tmp_path) == []


@FUSED
def test_short_body_until_retries_run_out(fault, small_data, tmp_path, fused):
    _, tgz = small_data
    body = tgz.read_bytes()
    to, part = tmp_path / "c.tgz", tmp_path / "c.tgz.part"
    ex = tmp_path / "x" if fused else None
    r = dl(f"{fault.url}/short", to, ex, "--retries 2")
    assert r.returncode == 1
    assert "NetworkError" in r.stderr and f"{fault.url}/short" in r.stderr
    assert "Transferred a partial file" in r.stderr and "(3 attempts)" in r.stderr
    # each retry asked for the rest, from the last byte received
    n = len(body)
    assert [rg for _, rg in fault.ranges] == [None, f"bytes={n // 2}-",
                                             f"bytes={n // 2 + (n - n // 2) // 2}-"]
    assert not to.exists()
    kept = part.read_bytes()
    assert 0 < len(kept) < n and body.startswith(kept)
    if fused:
        only_complete_members(ex, small_data)


@FUSED
def test_5xx_until_retries_run_out(fault, small_data, tmp_path, fused):
    to = tmp_path / "c.tgz"
    ex = tmp_path / "x" if fused else None
    r = dl(f"{fault.url}/503", to, ex, "--retries 2")
    assert r.returncode == 1
    assert f"HTTPError: {fault.url}/503: HTTP 503" in r.stderr and "(3 attempts)" in r.stderr
    assert "HTTP 503; retry 2 of 2" in r.stderr and fault.hits["/503"] == 3
    # nothing was received: nothing is kept, not even an empty DIR
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@FUSED
def test_server_dies_mid_transfer(small_data, tmp_path, fused):
    d, tgz = small_data
    body = tgz.read_bytes()
    to, part = tmp_path / "c.tgz", tmp_path / "c.tgz.part"
    ex = tmp_path / "x" if fused else None
    s = FaultServer(body)
    try:
        r = dl(f"{s.url}/die", to, ex, "--retries 2")
    finally:
        s.close()
    assert s.dead and s.hits == {"/die": 1}
    assert r.returncode == 1
    assert "NetworkError" in r.stderr and f"{s.url}/die" in r.stderr and "(3 attempts)" in r.stderr
    assert "retry 2 of 2" in r.stderr
    assert not to.exists()
    kept = part.read_bytes()
    assert 0 < len(kept) < len(body) and body.startswith(kept)
    if fused:
        only_complete_members(ex, small_data)
    # the server comes back (elsewhere): --resume finishes the job
    s = FaultServer(body)
    try:
        r = dl(f"{s.url}/ok", to, ex, f"--resume --md5 {md5(tgz)}",
               f"--verify {d}/MANIFEST.md5" if fused else "")
    finally:
        s.close()
    assert r.returncode == 0, r.stderr
    assert s.ranges == [("/ok", f"bytes={len(kept)}-")]
    assert to.read_bytes() == body and not part.exists()


# A resumed answer must be the rest of the same file: a 206 with exactly the
# range asked for, the first answer's length and ETag, no more bytes than it
# says. Plain, anything else starts over from byte 0 (the file is whole and the
# new one); with --extract, whose members already took the first bytes, it is a
# clear error and nothing of the download is kept.
SPLICES = [  # path, what the error says
    ("/badrange", "(it starts at byte 0, not at "),
    ("/gaprange", "and the server answered 206 with Content-Range bytes "),
    ("/total", "the first answer's was "),
    ("/longbody", "its Content-Length "),
    ("/longbody-close", "the server sent more than the "),
    ("/backwards", "(it ends before it starts)"),
    ("/changed-ifrange-ignored", 'its ETag "v2" is not the first answer\'s "v1": another file'),
    ("/changed", "with other bytes than the first answer's: the file changed on the server"),
]


@pytest.mark.parametrize("path,says", SPLICES, ids=[p for p, _ in SPLICES])
def test_resumed_answer_of_another_file_starts_over(fault, small_data, tmp_path, path, says):
    _, tgz = small_data
    to = tmp_path / "c.tgz"
    r = dl(f"{fault.url}{path}", to, None)
    assert r.returncode == 0, r.stderr
    want = fault.other if path.startswith("/changed") else tgz.read_bytes()
    assert to.read_bytes() == want  # one file, never the halves of two
    assert ("starting over from byte 0" in r.stderr) != (path == "/changed"), r.stderr
    if path == "/changed":  # If-Range honoured: the new file whole, in the same answer
        assert "sent the whole file (HTTP 200); taking it from byte 0" in r.stderr, r.stderr
    else:
        assert says in r.stderr, r.stderr
    if path not in ("/badrange", "/gaprange"):  # these two send no ETag
        assert fault.if_ranges[1] == (path, '"v1"')
    assert temp_names(tmp_path) == []


@pytest.mark.parametrize("path,says", SPLICES, ids=[p for p, _ in SPLICES])
def test_resumed_answer_of_another_file_with_extract_fails(fault, small_data, tmp_path, path, says):
    to, ex = tmp_path / "c.tgz", tmp_path / "x"
    r = dl(f"{fault.url}{path}", to, ex)
    assert r.returncode == 1, r.stderr
    assert f"HTTPError: {fault.url}{path}: " in r.stderr and says in r.stderr, r.stderr
    assert not to.exists() and not (tmp_path / "c.tgz.part").exists()
    only_complete_members(ex, small_data)


@pytest.mark.parametrize("path,validator", [("/etag", '"v1"'),
                                            ("/lastmod", "Wed, 21 Oct 2015 07:28:00 GMT")])
@FUSED
def test_resume_sends_if_range(fault, small_data, tmp_path, path, validator, fused):
    """The retry asks for the rest of the same file: If-Range with the first
    answer's ETag, or its Last-Modified when it has no ETag."""
    d, tgz = small_data
    to, ex = tmp_path / "c.tgz", tmp_path / "x" if fused else None
    r = dl(f"{fault.url}{path}", to, ex, f"--md5 {md5(tgz)}")
    assert r.returncode == 0, r.stderr
    assert fault.if_ranges[0] == (path, None) and fault.if_ranges[1] == (path, validator)
    assert fault.ranges[1][1] == f"bytes={len(tgz.read_bytes()) // 2}-"
    assert "starting over" not in r.stderr and to.read_bytes() == tgz.read_bytes()


@FUSED
def test_resume_of_an_earlier_run_asks_for_the_same_file(fault, small_data, tmp_path, fused):
    """--resume in a later run: PATH.part keeps the first answer's ETag and length
    (an extended attribute), so the file replaced on the server meanwhile is
    taken whole (plain) or refused (--extract), never spliced onto the old half."""
    _, tgz = small_data
    to, ex = tmp_path / "c.tgz", tmp_path / "x" if fused else None
    part = tmp_path / "c.tgz.part"
    r = dl(f"{fault.url}/changed", to, ex, "--retries 0")
    assert r.returncode == 1 and part.exists(), r.stderr
    assert os.getxattr(part, "user.pipekernel.resource").decode().split("\n")[1] == '"v1"'
    r = dl(f"{fault.url}/changed", to, ex, "--resume")
    assert fault.if_ranges[1] == ("/changed", '"v1"')
    if fused:
        assert r.returncode == 1 and "the file changed on the server" in r.stderr, r.stderr
        assert not to.exists() and not part.exists()
    else:
        assert r.returncode == 0, r.stderr
        assert to.read_bytes() == fault.other and not part.exists()


# ------------------------------------------------------------------ disk full
def assert_no_space(rep, path):
    assert rep["rc"] == 1, rep
    assert "NoSpaceError" in rep["stderr"] and "No space left on device" in rep["stderr"], rep["stderr"]
    assert str(path) in rep["stderr"], rep["stderr"]


def test_download_fills_the_disk(fault, tmp_path):
    fs = tmp_path / "fs"
    rep = run_small_fs([(fs, "2m")], [f"%download {fault.url}/ok --to {fs}/c.tgz"], [fs])
    assert_no_space(rep, f"{fs}/c.tgz.part: write failed")
    assert rep["files"] == {}  # the partial .part is removed: --resume cannot use a full disk


def test_download_extract_fills_the_disk_mid_member(fault, small_data, tmp_path):
    """The extractor's free-space check passes (DIR has room) but the member's folder is a
    2 MB tmpfs: data_batch_2 fails mid-write."""
    d, tgz = small_data
    ex = tmp_path / "x"
    rep = run_small_fs([(ex / "cifar-10-batches-py", "2m")],
                       [f"%download {fault.url}/ok --to {tmp_path}/c.tgz --md5 {md5(tgz)} "
                        f"--extract {ex} --verify {d}/MANIFEST.md5"], [tmp_path])
    assert_no_space(rep, f"{ex}/cifar-10-batches-py/data_batch_2: write failed")
    # with --md5 it is all or nothing: data_batch_1 was complete, and is undone with the rest
    assert "is undone (1 file)" in rep["stderr"]
    assert rep["files"] == {}


def test_download_and_extract_share_a_full_disk(fault, small_data, tmp_path):
    d, tgz = small_data
    fs = tmp_path / "fs"
    rep = run_small_fs([(fs, "6m")], [f"%download {fault.url}/ok --to {fs}/c.tgz --md5 {md5(tgz)} "
                                      f"--extract {fs}/x"], [fs])
    assert rep["rc"] == 1 and "NoSpaceError" in rep["stderr"] and str(fs) in rep["stderr"]
    # with --md5 it is all or nothing: no c.tgz, no .part, and the members that were
    # complete before the disk filled up are undone
    assert "is undone" in rep["stderr"]
    assert rep["files"] == {}
    # without --md5 the complete members stay, as after %extract
    rep = run_small_fs([(fs, "6m")], [f"%download {fault.url}/ok --to {fs}/c.tgz --extract {fs}/x"], [fs])
    assert rep["rc"] == 1 and "NoSpaceError" in rep["stderr"] and "undone" not in rep["stderr"]
    src = d / "cifar-10-batches-py"
    assert rep["files"], "nothing was extracted before the disk filled up"
    for f, info in rep["files"].items():  # whole members only; no c.tgz, no .part
        assert Path(f).parent == fs / "x" / "cifar-10-batches-py", f
        assert info["md5"] == md5(src / Path(f).name), f


def test_extract_fills_the_disk_mid_member(small_data, tmp_path):
    d, tgz = small_data
    ex = tmp_path / "x"
    rep = run_small_fs([(ex / "cifar-10-batches-py", "2m")], [f"%extract {tgz} --to {ex}"], [ex])
    assert_no_space(rep, f"{ex}/cifar-10-batches-py/data_batch_2: write failed")
    assert list(rep["files"]) == [str(ex / "cifar-10-batches-py/data_batch_1")]
    assert rep["files"][str(ex / "cifar-10-batches-py/data_batch_1")]["md5"] == \
        md5(d / "cifar-10-batches-py/data_batch_1")


def test_extract_refuses_a_member_larger_than_the_free_space(small_data, tmp_path):
    d, tgz = small_data
    ex = tmp_path / "x"
    rep = run_small_fs([(ex, "2m")], [f"%extract {tgz} --to {ex}"], [ex])
    assert rep["rc"] == 1 and "NoSpaceError" in rep["stderr"]
    assert (f'member "cifar-10-batches-py/data_batch_2" claims 1549023 bytes, more than the'
            in rep["stderr"]) and f"free in {ex}; refused before writing" in rep["stderr"]
    assert list(rep["files"]) == [str(ex / "cifar-10-batches-py/data_batch_1")]


def mkdata_pages(small_data):
    """tmpfs pages the small data set needs (every file rounded up to a page)."""
    page = os.sysconf("SC_PAGE_SIZE")
    files = [f for f in small_data[0].rglob("*") if f.is_file()]
    return page, sum(-(-f.stat().st_size // page) for f in files)


# how full: the tarball's first member, a batch file, the tarball's last member,
# the manifest (the last byte written, after the tarball is complete)
@pytest.mark.parametrize("short", ["2m", "5m", "7m", "last-page"])
def test_mkdata_fills_the_disk(small_data, tmp_path, short):
    d, _ = small_data
    page, pages = mkdata_pages(small_data)
    size = (pages - 1) * page if short == "last-page" else short
    fs = tmp_path / "fs"
    rep = run_small_fs([(fs, size)], [f"%mkdata {fs}/d --train-batches 2 --images-per-batch 500 "
                                      "--seed 3"], [fs])
    assert_no_space(rep, f"{fs}/d/")
    if short == "last-page":
        assert f"{fs}/d/MANIFEST.md5: write failed: No space left on device" in rep["stderr"]
    left = {Path(f).relative_to(fs / "d"): info for f, info in rep["files"].items()}
    # neither the tarball nor the manifest has its final name; what has is whole
    assert Path("cifar-10-python.tar.gz") not in left and Path("MANIFEST.md5") not in left
    for rel, info in left.items():
        assert ".tmp-" not in rel.name, rel
        assert info["md5"] == md5(d / rel), rel
