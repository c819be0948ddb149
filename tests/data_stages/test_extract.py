"""%extract: correct output for good archives, refusal of hostile ones."""
import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pkutil import run_cli


def tree(root):
    """{relative path: ('f', bytes) | ('l', target) | ('d', None)}"""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", None)
            else:
                out[rel] = ("f", open(p, "rb").read())
    return out


@pytest.mark.parametrize("inflater", ["auto", "isal", "libarchive"])
def test_extract_dataset(small_data, tmp_path, inflater, pk_bin):
    d, tgz = small_data
    out = tmp_path / "out"
    p = run_cli(f"%extract {tgz} --to {out} --inflater {inflater}", check=True)
    assert "extract:" in p.stdout and "5 files" in p.stdout
    want = tree(d / "cifar-10-batches-py")
    got = tree(out / "cifar-10-batches-py")
    assert got == want


def test_extract_plain_tar_and_others(tmp_path, pk_bin):
    files = {"a/b/c.txt": b"hello", "a/empty": b"", "top.bin": os.urandom(300000)}
    for mode, suffix in [("w", "tar"), ("w:gz", "tgz"), ("w:bz2", "tbz"), ("w:xz", "txz")]:
        arc = tmp_path / f"x.{suffix}"
        with tarfile.open(arc, mode) as t:
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = 0o640
                t.addfile(ti, io.BytesIO(data))
            ti = tarfile.TarInfo("a/link")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "b/c.txt"
            t.addfile(ti)
            ti = tarfile.TarInfo("a/hard")
            ti.type = tarfile.LNKTYPE
            ti.linkname = "top.bin"
            t.addfile(ti)
        out = tmp_path / f"out-{suffix}"
        run_cli(f"%extract {arc} --to {out}", check=True)
        for name, data in files.items():
            assert (out / name).read_bytes() == data
        assert os.readlink(out / "a/link") == "b/c.txt"
        assert (out / "a/link").read_bytes() == b"hello"
        assert (out / "a/hard").read_bytes() == files["top.bin"]
        assert stat.S_IMODE((out / "a/b/c.txt").stat().st_mode) == 0o640
    # concatenated gzip members (as pigz/some tools write) are one stream
    raw = (tmp_path / "x.tar").read_bytes()
    two = tmp_path / "two.tar.gz"
    two.write_bytes(gzip.compress(raw[:10240]) + gzip.compress(raw[10240:]))
    run_cli(f"%extract {two} --to {tmp_path / 'out-two'}", check=True)
    assert (tmp_path / "out-two/top.bin").read_bytes() == files["top.bin"]


def zip_entry(z, name, data=b"", mode=0o644, link=None):
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3  # unix: the mode is in the high half of external_attr
    kind = stat.S_IFLNK if link is not None else stat.S_IFREG
    zi.external_attr = (kind | mode) << 16
    z.writestr(zi, link.encode() if link is not None else data, compress_type=zipfile.ZIP_DEFLATED)


def test_extract_zip_reads_the_central_directory(tmp_path, pk_bin):
    """A zip keeps modes and symlinks only in its central directory, at the
    end: a file source is read with seeks, so they come out as stored."""
    body = os.urandom(200000)
    arc = tmp_path / "x.zip"
    with zipfile.ZipFile(arc, "w") as z:
        zip_entry(z, "a/b/data.bin", body, mode=0o640)
        zip_entry(z, "a/run.sh", b"#!/bin/sh\n", mode=0o755)
        zip_entry(z, "a/link", link="b/data.bin", mode=0o777)
    out = tmp_path / "out"
    p = run_cli(f"%extract {arc} --to {out}", check=True)
    assert "extract:" in p.stdout and "2 files" in p.stdout, p.stdout
    assert (out / "a/b/data.bin").read_bytes() == body
    assert stat.S_IMODE((out / "a/b/data.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / "a/run.sh").stat().st_mode) == 0o755
    assert os.readlink(out / "a/link") == "b/data.bin"
    # the same checks as for tar: a link out of DIR is refused, nothing written outside
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        zip_entry(z, "ok.txt", b"fine")
        zip_entry(z, "up", link="../..", mode=0o777)
    work = tmp_path / "work"
    p = run_cli(f"%extract {evil} --to {work}")
    assert p.returncode != 0
    assert "leads out of" in p.stderr, p.stderr
    assert not os.path.lexists(work / "up")


ARCHIVES = Path(__file__).resolve().parent.parent / "data/archives"


def test_extract_7zip(tmp_path, pk_bin):
    """7-Zip's header is at the end of the file: it is read with seeks.
    (The two archives were written by libarchive's 7-Zip writer.)"""
    out = tmp_path / "out"
    p = run_cli(f"%extract {ARCHIVES / 'links.7z'} --to {out}", check=True)
    assert "1 file in" in p.stdout, p.stdout
    assert (out / "d/f.txt").read_bytes() == b"seven zip seven zip seven zip\n"
    assert stat.S_IMODE((out / "d/f.txt").stat().st_mode) == 0o640
    assert os.readlink(out / "d/l") == "f.txt"
    work = tmp_path / "work"
    p = run_cli(f"%extract {ARCHIVES / 'link-out.7z'} --to {work}")
    assert p.returncode != 0
    assert 'symlink "d/out" -> "../../sentinel" leads out of' in p.stderr, p.stderr
    assert not os.path.lexists(work / "d/out")
    # from a pipe, which cannot seek: a clear error, nothing made
    import threading
    fifo = tmp_path / "arc.7z"
    os.mkfifo(fifo)

    def feed():
        try:
            with open(fifo, "wb") as f:
                f.write((ARCHIVES / "links.7z").read_bytes())
        except BrokenPipeError:
            pass
    t = threading.Thread(target=feed)
    t.start()
    p = run_cli(f"%extract {fifo} --to {tmp_path / 'piped'}")
    t.join()
    assert p.returncode != 0
    assert "keeps its directory at the end" in p.stderr and "not from a pipe" in p.stderr, p.stderr
    assert not (tmp_path / "piped").exists()


# The hostile archives are the case folders of tests/data/archive/invalid
# (tests/data/make_cases.py writes them; tests/test-cases.c reads them too):
# each is refused through `pipekernel run` with the error its `error` file
# names, and nothing appears outside DIR.
CASES = Path(__file__).resolve().parent.parent / "data" / "archive" / "invalid"
ABSOLUTE = "/tmp/pipekernel-case-absolute"  # the member name of the "absolute" cases


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_hostile_refused(tmp_path, case, pk_bin):
    arc = CASES / case / "input"
    want = [line for line in (CASES / case / "error").read_text().splitlines() if line]
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "victim").write_bytes(b"victim")
    before = sorted(os.listdir(tmp_path))
    out = work / "out"
    p = run_cli(f"%extract {arc} --to {out}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert all(w in p.stderr for w in want), (want, p.stderr)
    assert str(arc) in p.stderr
    # nothing outside DIR: the parent folders hold what they held before
    assert sorted(os.listdir(tmp_path)) == before
    # DIR stays only with what was complete before the refusal; made and left empty, it goes
    assert os.listdir(work) in ([], ["out"])
    assert not out.exists() or os.listdir(out)
    assert (tmp_path / "victim").read_bytes() == b"victim"
    assert not os.path.exists(ABSOLUTE)
    assert not os.path.exists(work / "x")
    # no temporary files left inside DIR, no escaping link
    for rel, (kind, val) in tree(out).items():
        assert ".pk-tmp" not in rel
        if kind == "l":
            real = os.path.realpath(out / rel)
            assert real.startswith(str(out.resolve())), (rel, val)


def test_member_claiming_terabytes(tmp_path, pk_bin):
    ti = tarfile.TarInfo("huge.bin")
    ti.size = 4 << 40  # 4 TiB
    hdr = ti.tobuf(format=tarfile.GNU_FORMAT)
    arc = tmp_path / "huge.tar"
    arc.write_bytes(hdr + b"\0" * 4096)
    out = tmp_path / "out"
    p = run_cli(f"%extract {arc} --to {out}")
    assert p.returncode == 1
    assert "LimitError" in p.stderr and "huge.bin" in p.stderr and "refused before writing" in p.stderr
    assert not out.exists()  # made by the run and left empty: removed again
    # more than the free space (but under the limit) is refused too
    ti.size = 900 << 30
    hdr = ti.tobuf(format=tarfile.GNU_FORMAT)
    st = os.statvfs(tmp_path)
    if 900 << 30 > st.f_bavail * st.f_frsize:
        arc.write_bytes(hdr + b"\0" * 4096)
        p = run_cli(f"%extract {arc} --to {out}")
        assert p.returncode == 1 and "NoSpaceError" in p.stderr and "free" in p.stderr
        assert not out.exists()


def test_corrupt_and_truncated(small_data, tmp_path, pk_bin):
    d, tgz = small_data
    raw = tgz.read_bytes()
    trunc = tmp_path / "trunc.tar.gz"
    trunc.write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "out"
    p = run_cli(f"%extract {trunc} --to {out}")
    assert p.returncode == 1 and str(trunc) in p.stderr
    # files finished before the damage are complete; the one cut is not there at all
    for f in (out / "cifar-10-batches-py").iterdir():
        assert ".pk-tmp" not in f.name
        assert f.read_bytes() == (d / "cifar-10-batches-py" / f.name).read_bytes()
    bad = bytearray(raw)
    for i in range(1000, 1100):
        bad[i] ^= 0x55
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(bytes(bad))
    p = run_cli(f"%extract {corrupt} --to {tmp_path / 'out2'}")
    assert p.returncode == 1 and "FormatError" in p.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(5000))
    p = run_cli(f"%extract {junk} --to {tmp_path / 'out3'}")
    assert p.returncode == 1 and "FormatError" in p.stderr
    fake = tmp_path / "fake.tar.gz"  # a gzip magic number, then noise
    fake.write_bytes(b"\x1f\x8b" + os.urandom(1000))
    p = run_cli(f"%extract {fake} --to {tmp_path / 'out4'}")
    assert p.returncode == 1 and "fake.tar.gz" in p.stderr
    # nothing could be read: the DIR each run made is gone again; one that was there stays
    assert not (tmp_path / "out3").exists() and not (tmp_path / "out4").exists()
    (tmp_path / "there").mkdir()
    p = run_cli(f"%extract {junk} --to {tmp_path / 'there'}")
    assert p.returncode == 1 and (tmp_path / "there").is_dir()
    p = run_cli(f"%extract {tgz}")
    assert p.returncode != 0 and "--to" in p.stderr


@pytest.mark.parametrize("cut", [1, 4, 8, 30])
def test_gzip_trailer_is_checked(small_data, tmp_path, pk_bin, cut):
    """The tar ends before the gzip stream: a tail cut off (or a CRC-32 that
    does not match) is still an error, in %extract and %download --extract."""
    d, tgz = small_data
    raw = tgz.read_bytes()
    short = tmp_path / "short.tar.gz"
    short.write_bytes(raw[:-cut])
    bad = bytearray(raw)
    bad[-6] ^= 0xFF  # inside the CRC-32 of the trailer
    badcrc = tmp_path / "badcrc.tar.gz"
    badcrc.write_bytes(bytes(bad))
    for arc, why in ((short, "truncated"), (badcrc, "CRC-32 does not match")):
        out = tmp_path / f"out-{arc.stem}"
        p = run_cli(f"%extract {arc} --to {out}")
        assert p.returncode == 1 and "FormatError" in p.stderr and why in p.stderr, p.stderr
        assert str(arc) in p.stderr
        dl, out2 = tmp_path / f"dl-{arc.name}", tmp_path / f"dx-{arc.stem}"
        p = run_cli(f"%download file://{arc} --to {dl} --extract {out2}")
        assert p.returncode == 1 and why in p.stderr, p.stderr
        # the error names what was read (the URL), not a --to path that is never written
        assert f"file://{arc}" in p.stderr and str(dl) not in p.stderr, p.stderr
        assert not dl.exists()
        for o in (out, out2):  # members complete before the damage are whole; no temporaries
            for f in (o / "cifar-10-batches-py").iterdir() if o.exists() else ():
                assert ".pk-tmp" not in f.name
                assert f.read_bytes() == (d / "cifar-10-batches-py" / f.name).read_bytes()



# ---- archives that expand without bound -------------------------------------------
def zeros_tgz(path, mib):
    """A tar.gz holding one file of `mib` MiB of zeros (zlib level 6: about
    1000 bytes out per byte in), written without holding it whole."""
    ti = tarfile.TarInfo("zeros.bin")
    ti.size = mib << 20
    with gzip.open(path, "wb", compresslevel=6) as g:
        g.write(ti.tobuf(format=tarfile.GNU_FORMAT))
        block = bytes(1 << 20)
        for _ in range(mib):
            g.write(block)
        g.write(b"\0" * 1024)


@pytest.mark.parametrize("inflater", ["isal", "libarchive"])
def test_archive_that_expands_too_much_is_refused(tmp_path, pk_bin, inflater):
    """A 300 KB gzip that would write 300 MB: past 64 MiB at most
    PK_LIMIT_EXTRACT_RATIO (200) bytes per archive byte; the member being
    written goes, and the DIR the run made."""
    arc = tmp_path / "bomb.tar.gz"
    zeros_tgz(arc, 300)
    out = tmp_path / "out"
    p = run_cli(f"%extract {arc} --to {out} --inflater {inflater}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "LimitError" in p.stderr and 'member "zeros.bin"' in p.stderr, p.stderr
    assert "more than 200 per byte (PK_LIMIT_EXTRACT_RATIO)" in p.stderr and "--max-ratio" in p.stderr
    assert not out.exists()


def test_max_ratio_raises_the_bound_and_zeros_become_holes(tmp_path, pk_bin):
    """--max-ratio 0 lifts the bound (--max-ratio N raises it); the zeros are
    written as holes: 300 MB of them take almost no room in DIR."""
    arc = tmp_path / "bomb.tar.gz"
    zeros_tgz(arc, 300)
    out = tmp_path / "out"
    p = run_cli(f"%extract {arc} --to {out} --max-ratio 0")
    assert p.returncode == 0, p.stderr
    z = out / "zeros.bin"
    st = z.stat()
    assert st.st_size == 300 << 20
    assert st.st_blocks * 512 < (16 << 20), st.st_blocks  # holes, where the file system keeps them
    with open(z, "rb") as f:
        assert all(not any(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
    p = run_cli(f"%extract {arc} --to {tmp_path / 'o2'} --max-ratio 2000")
    assert p.returncode == 0, p.stderr
    p = run_cli(f"%extract {arc} --to {tmp_path / 'o3'} --max-ratio -1")
    assert p.returncode == 1 and "UsageError" in p.stderr


def test_holes_keep_every_byte(tmp_path, pk_bin):
    """Data, zero runs that are whole blocks and runs that are not, a zero tail:
    the file reads back byte for byte, and its md5 (as %download --verify sees
    it) is the file's."""
    data = (b"head" + bytes(5000) + b"x" * 3 + bytes(3 << 20) + b"mid" + bytes(4093) + b"y"
            + bytes(1 << 20))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("mixed.bin")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    arc = tmp_path / "mixed.tar.gz"
    arc.write_bytes(buf.getvalue())
    out = tmp_path / "out"
    run_cli(f"%extract {arc} --to {out}", check=True)
    assert (out / "mixed.bin").read_bytes() == data
    man = tmp_path / "M.md5"
    man.write_text(f"{hashlib.md5(data).hexdigest()}  mixed.bin\n")
    p = run_cli(f"%download file://{arc} --to {tmp_path / 'c.tgz'} --extract {tmp_path / 'o2'} "
                f"--verify {man}", check=True)
    assert "all OK" in p.stdout and (tmp_path / "o2/mixed.bin").read_bytes() == data


def test_fused_download_of_an_archive_that_expands_too_much(tmp_path, pk_bin):
    arc = tmp_path / "bomb.tar.gz"
    zeros_tgz(arc, 300)
    p = run_cli(f"%download file://{arc} --to {tmp_path / 'c.tgz'} --extract {tmp_path / 'x'}")
    assert p.returncode == 1 and "PK_LIMIT_EXTRACT_RATIO" in p.stderr, p.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "c.tgz").exists()
    p = run_cli(f"%download file://{arc} --to {tmp_path / 'c.tgz'} --extract {tmp_path / 'x'} "
                f"--max-ratio 0", check=True)
    assert (tmp_path / "x/zeros.bin").stat().st_size == 300 << 20
