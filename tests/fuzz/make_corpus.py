#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

  wire      Jupyter messages, frames separated by "\\n--\\n" (fuzz_wire.c)
  magic     cells of the magic language
  manifest  md5sum manifests (and the same bytes through the escaping of names)
  download  answers to a resumed download: "FROM TOTAL", the first answer's
            ETag and Last-Modified, then the answer's header lines
  s3xml     S3 response bodies (AWS and Ceph RGW shapes, as documented)
  extract   small archives: tar, tar.gz (one and two gzip members), tar.bz2,
            tar.xz, zip, cpio, and hostile ones (.., absolute paths, symlinks
            and hard links leading out, writes through symlinks, devices,
            fifos, huge and sparse sizes, long and deep names); 7zip-links, a
            7-Zip archive written by libarchive's writer (Python has none), is
            kept as it is

Only seed-* files are rewritten; crashers kept as regression cases
(regress-*) stay. The pickle corpus comes from tests/load/make_cases.py.
Run from anywhere: python3 tests/fuzz/make_corpus.py
"""
import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / ("seed-" + name)).write_bytes(data)


def clear(target):
    d = CORPUS / target
    if d.is_dir():
        for p in d.glob("seed-*"):
            p.unlink()


# ---- wire -------------------------------------------------------------------
def msg(*frames):
    return "\n--\n".join(frames)


def wire():
    hdr = '{"msg_id":"%s","msg_type":"%s","session":"s1","username":"u","date":"2026-01-01T00:00:00.000000Z","version":"5.3"}'
    write("wire", "kernel-info", msg("<IDS|MSG>", "", '{"msg_id":"1","msg_type":"kernel_info_request"}',
                                     "{}", "{}", "{}"))
    write("wire", "execute", msg(
        "ident-1", "<IDS|MSG>", "0" * 64, hdr % ("m1", "execute_request"), "{}", "{}",
        '{"code":"%set X=1\\n%echo $X","silent":false,"store_history":true,'
        '"user_expressions":{},"allow_stdin":true,"stop_on_error":true}'))
    write("wire", "unicode", msg(
        "<IDS|MSG>", "", hdr % ("m2", "complete_request"), '{"msg_id":"m1"}', '{"k":[1,2.5,null,true]}',
        '{"code":"%echo \\u00e9\\ud83d\\ude00 \\"q\\"","cursor_pos":7}'))
    write("wire", "buffers", msg(
        "a", "b", "<IDS|MSG>", "sig", hdr % ("m3", "comm_open"), "{}", "{}", '{"comm_id":"c"}',
        "\x00\x01binary", "more"))
    write("wire", "no-delimiter", msg("x", hdr % ("m4", "kernel_info_request"), "{}", "{}", "{}"))
    write("wire", "bad-json", msg("<IDS|MSG>", "", '{"msg_id":"m5","msg_type":', "{}", "{}", "{}"))
    write("wire", "dup-keys", msg("<IDS|MSG>", "", '{"msg_id":"a","msg_id":"b","msg_type":"t"}', "{}", "{}", "{}"))


# ---- magic ------------------------------------------------------------------
def magic():
    write("magic", "readme", "%help\n%echo hello\n%sleep 0.5\n")
    write("magic", "vars", '%set --default EPOCHS=2 URL="file:///data/x.tar.gz" EMPTY=\n'
          "%echo $EPOCHS ${URL} '$NOT' \"${A}-$A\" \\$A\n%set EPOCHS\n%set --unset EMPTY\n")
    write("magic", "continuation", "%download http://127.0.0.1:8080/cifar-10-python.tar.gz \\\n"
          "    --to data/cifar-10-python.tar.gz \\\n    --md5 c58f30108f718f92721af3b95e74349a \\\n"
          "    --extract work --verify data/MANIFEST.md5\n")
    write("magic", "quotes", "%echo 'single $A' \"double $A \\\" \\$ \\\\ \\x\" back\\ slash ''\"\"\n"
          "# a comment\n   \n%echo --stderr -- --not-an-option\n")
    write("magic", "cell-magic", "%%html\n<b>bold</b>\n%echo not run\n")
    write("magic", "html-line", "%html <i>x</i>\n%markdown **y**\n")
    write("magic", "nested", "%time %ifset A %time %echo ${SPACED}\n%ifset EMPTY %echo skipped\n")
    write("magic", "options", "%extract data/x.tar.gz --to=work --inflater libarchive\n"
          "%upload work s3://bucket/prefix --part-size 8 --jobs 4 --path-style --skip-existing\n"
          "%train --epochs 2 --batch-size 4 --seed 1 --device cpu\n%timings --compare paper:test1-weka current\n"
          "%preview --n 4 --seed 3 --scale 2\n%pipeline --mode copy --source data --work w --fused\n")
    write("magic", "errors", "%ech hi\n%echo 'open\n%echo ${\n%echo $NOT_SET_ANYWHERE\nplain text\n")
    write("magic", "help", "%sleep?\n%upload?\n%help extract\n%lsmagic\n%pwd\n")
    write("magic", "crlf", "%set A=1\r\n%echo $A\\\r\n  more\r\n")


# ---- manifest ---------------------------------------------------------------
def manifest():
    h = "c58f30108f718f92721af3b95e74349a"
    write("manifest", "cifar", "".join("%s  cifar-10-batches-py/%s\n" % (h, n) for n in
          ["batches.meta", "data_batch_1", "data_batch_2", "readme.html", "test_batch"]))
    write("manifest", "binary-mode", "%s *a.bin\n%s  ./b/c.txt\n" % (h.upper(), h))
    write("manifest", "escaped", "\\%s  dir\\\\with\\nnewline\n%s  plain\\name\n" % (h, h))
    write("manifest", "comments-crlf", "# made by md5sum\r\n\r\n%s  x\r\n#%s  y\n%s  y" % (h, h, h))
    write("manifest", "duplicate", "%s  a\n%s  ./a\n" % (h, h))
    write("manifest", "hostile", "%s  ../etc/passwd\n%s  /abs\n%s  a/../../b\n" % (h, h, h))
    write("manifest", "short", "%s\n%s x\nnot hex at all, not at all, no\n" % (h, h[:31]))
    write("manifest", "control-bytes", "%s  a/\x1b[2Jb\n%s  ./x//./y\n%s  c\xc2\x9bd\xe2\x80\xaee\n"
          "%s  \x1b]0;title\x07/../z\n" % (h, h, h, h))


# ---- download -----------------------------------------------------------------
def download():
    t = 'Wed, 21 Oct 2015 07:28:00 GMT'
    write("download", "exact", '500 1000\n"v1"\n%s\nHTTP/1.1 206 Partial Content\r\n'
          'Content-Range: bytes 500-999/1000\r\nContent-Length: 500\r\nETag: "v1"\r\n\r\n' % t)
    write("download", "whole", '500 1000\n"v1"\n\nHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n'
          'ETag: "v2"\r\n\r\n')
    write("download", "other-total", '500 1000\n\n%s\nHTTP/1.1 206 Partial Content\r\n'
          'Content-Range: bytes 500-1999/2000\r\nLast-Modified: %s\r\n\r\n' % (t, t))
    write("download", "backwards", '500 -1\nW/"weak"\n\nHTTP/1.1 100 Continue\r\n\r\n'
          'HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 500-10/*\r\nContent-Length: 99\r\n\r\n')
    write("download", "redirect", '0 -1\n\n\nHTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n'
          'HTTP/2 206\r\ncontent-range: bytes 0-1/2\r\n\r\n')


# ---- s3xml --------------------------------------------------------------------
def s3xml():
    decl = '<?xml version="1.0" encoding="UTF-8"?>\n'
    ns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    write("s3xml", "error-nosuchbucket", decl + "<Error><Code>NoSuchBucket</Code>"
          "<Message>The specified bucket does not exist</Message><BucketName>b</BucketName>"
          "<RequestId>4442587FB7D0A2F9</RequestId><HostId>host</HostId></Error>")
    write("s3xml", "error-rgw", decl + "<Error><Code>SignatureDoesNotMatch</Code><Message></Message>"
          "<BucketName>data</BucketName><RequestId>tx00000a1b2c3d4e5f-0065a1b2c3-1234-default</RequestId>"
          "<HostId>1234-default-default</HostId></Error>")
    write("s3xml", "list-v2", decl + "<ListBucketResult%s><Name>bucket</Name><Prefix>p/</Prefix>"
          "<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
          "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
          "<Contents><Key>p/a.bin</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
          "<ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag><Size>142863</Size>"
          "<StorageClass>STANDARD</StorageClass></Contents>"
          "<Contents><Key>p/b&amp;c.txt</Key><Size>0</Size><ETag>\"d41d8cd98f00b204e9800998ecf8427e-2\"</ETag>"
          "</Contents></ListBucketResult>" % ns)
    write("s3xml", "list-v2-rgw", decl + "<ListBucketResult%s><Name>data</Name><Prefix></Prefix>"
          "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>cifar/x</Key>"
          "<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>18446744073709551615</Size>"
          "<StorageClass>STANDARD</StorageClass><Owner><ID>u</ID><DisplayName>u</DisplayName></Owner>"
          "<Type>Normal</Type></Contents><Marker></Marker><KeyCount>1</KeyCount></ListBucketResult>" % ns)
    write("s3xml", "list-uploads", decl + "<ListMultipartUploadsResult%s><Bucket>bucket</Bucket>"
          "<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>my-movie.m2ts</NextKeyMarker>"
          "<NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>"
          "<MaxUploads>3</MaxUploads><IsTruncated>true</IsTruncated><Upload><Key>my-divisor</Key>"
          "<UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>"
          "<Initiator><ID>arn:aws:iam::111122223333:user/user1</ID><DisplayName>u</DisplayName></Initiator>"
          "<StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>"
          "<Upload><UploadId>no-key</UploadId></Upload><Upload><Key>no-id</Key></Upload>"
          "</ListMultipartUploadsResult>" % ns)
    write("s3xml", "initiate", decl + "<InitiateMultipartUploadResult%s><Bucket>bucket</Bucket>"
          "<Key>example-object</Key><UploadId>2~iCw_lDY8VoNHJ4ON1Wgrx2pYb1hRe4q</UploadId>"
          "</InitiateMultipartUploadResult>" % ns)
    write("s3xml", "complete", decl + "<CompleteMultipartUploadResult%s><Location>http://h/b/k</Location>"
          "<Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
          "</CompleteMultipartUploadResult>" % ns)
    write("s3xml", "complete-200-error", decl + "\n\n\n<Error><Code>InternalError</Code>"
          "<Message>We encountered an internal error. Please try again.</Message></Error>")
    write("s3xml", "entities", '<?xml version="1.0"?><!DOCTYPE Error [<!ENTITY a "aaaaaaaa">'
          '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Error><Code>&b;</Code><Message><![CDATA[<x>]]>'
          '&#x1F600;&lt;</Message></Error>')
    write("s3xml", "deep", "<a>" * 20 + "<Key>k</Key>" + "</a>" * 20)
    write("s3xml", "bom-utf16", "\ufeff<Error><Code>x</Code></Error>".encode("utf-16"))


# ---- extract ----------------------------------------------------------------
def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    """members: (TarInfo kwargs, data or None)."""
    old = tarfile.RECORDSIZE
    tarfile.RECORDSIZE = 1024  # two end blocks, no padding to 10 KiB
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            for kw, data in members:
                ti = tarfile.TarInfo(kw.pop("name"))
                ti.mtime = 1700000000
                ti.mode = kw.pop("mode", 0o644)
                for k, v in kw.items():
                    setattr(ti, k, v)
                if data is not None:
                    ti.size = len(data)
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()
    finally:
        tarfile.RECORDSIZE = old


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def cpio_newc(entries):
    out = b""
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = b"070701" + b"".join(b"%08X" % v for v in (
            ino, mode, 0, 0, 1, 1700000000, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def extract():
    D, R, S, L, C, B, F = (tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                           tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
    plain = tar_bytes([({"name": "a", "type": D, "mode": 0o755}, None),
                       ({"name": "a/hello.txt"}, b"hello\n"),
                       ({"name": "./b.bin", "mode": 0o600}, bytes(range(256))),
                       ({"name": "a/link", "type": S, "linkname": "hello.txt"}, None),
                       ({"name": "a/hard", "type": L, "linkname": "a/hello.txt"}, None)])
    write("extract", "plain.tar", plain)
    write("extract", "plain.tar.gz", gz(plain))
    write("extract", "two-members.tar.gz", gz(plain[:1024]) + gz(plain[1024:]) + b"\0" * 8)
    write("extract", "plain.tar.bz2", bz2.compress(plain))
    write("extract", "plain.tar.xz", lzma.compress(plain))
    write("extract", "pax.tar", tar_bytes([({"name": "p/" + "x" * 150 + "/é.txt", "pax_headers": {
        "comment": "pax"}}, b"pax\n")], fmt=tarfile.PAX_FORMAT))
    write("extract", "gnu-longname.tar", tar_bytes([({"name": "l/" + "y" * 200}, b"long\n"),
                                                   ({"name": "l/s", "type": S, "linkname": "z" * 120}, None)]))
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(zipfile.ZipInfo("z/stored.txt", (2024, 1, 1, 0, 0, 0)), b"stored\n")
        zi = zipfile.ZipInfo("z/deflated.txt", (2024, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(zi, b"deflated " * 20)
        zf.writestr(zipfile.ZipInfo("../zip-slip.txt", (2024, 1, 1, 0, 0, 0)), b"evil\n")
    write("extract", "slip.zip", z.getvalue())
    # modes and symlinks that only the central directory holds; the last byte
    # (0x20, after the zip's empty comment) makes the harness's source seekable
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        for name, kind, mode, data in (("s/f", 0o100640, zipfile.ZIP_DEFLATED, b"file " * 30),
                                       ("s/in", 0o120777, zipfile.ZIP_STORED, b"f"),
                                       ("s/out", 0o120777, zipfile.ZIP_STORED, b"../../sentinel"),
                                       ("s/out/evil", 0o100644, zipfile.ZIP_STORED, b"x")):
            zi = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            zi.create_system = 3
            zi.external_attr = kind << 16
            zi.compress_type = mode
            zf.writestr(zi, data)
    write("extract", "seekable-links.zip", z.getvalue() + b"\x20")
    write("extract", "newc.cpio", cpio_newc([("c", 0o40755, b""), ("c/f", 0o100644, b"cpio\n"),
                                             ("c/../../evil", 0o100644, b"x")]))
    # hostile tars, one trick each
    hostile = {
        "dotdot.tar": [({"name": "../sentinel/evil"}, b"x")],
        "dotdot-inner.tar": [({"name": "a/../../sentinel/evil"}, b"x")],
        "absolute.tar": [({"name": "/tmp/pk-fuzz-abs"}, b"x")],
        "symlink-out.tar": [({"name": "up", "type": S, "linkname": "../sentinel"}, None),
                            ({"name": "up/evil"}, b"x")],
        "symlink-abs.tar": [({"name": "abs", "type": S, "linkname": "/tmp"}, None),
                            ({"name": "abs/evil"}, b"x")],
        "symlink-dot-climb.tar": [({"name": "d/s", "type": S, "linkname": "."}, None),
                                  ({"name": "d/t", "type": S, "linkname": "s/../../../sentinel"}, None),
                                  ({"name": "d/t/evil"}, b"x")],
        "symlink-then-dir.tar": [({"name": "s", "type": S, "linkname": "."}, None),
                                 ({"name": "s", "type": D}, None),
                                 ({"name": "s/f"}, b"x")],
        "hardlink-out.tar": [({"name": "h", "type": L, "linkname": "../sentinel/x"}, None),
                             ({"name": "h2", "type": L, "linkname": "/etc/passwd"}, None)],
        "hardlink-to-symlink.tar": [({"name": "s", "type": S, "linkname": "f"}, None),
                                    ({"name": "f"}, b"x"), ({"name": "h", "type": L, "linkname": "s"}, None)],
        "devices.tar": [({"name": "null", "type": C, "devmajor": 1, "devminor": 3}, None),
                        ({"name": "sda", "type": B, "devmajor": 8, "devminor": 0}, None),
                        ({"name": "fifo", "type": F}, None)],
        "file-over-dir.tar": [({"name": "x", "type": D}, None), ({"name": "x"}, b"x"),
                              ({"name": "y"}, b"y"), ({"name": "y/z"}, b"z")],
        "deep.tar": [({"name": "/".join(["d"] * 40) + "/f"}, b"x")],
        "root-itself.tar": [({"name": "./", "type": D}, None), ({"name": ".", "type": R}, b"x")],
    }
    for name, members in hostile.items():
        write("extract", name, tar_bytes(members))
    # a header claiming a huge size with no data behind it
    huge = bytearray(tar_bytes([({"name": "huge"}, b"")]))
    huge[124:136] = b"77777777777\0"  # 8 GiB
    huge[148:156] = b"        "
    huge[148:156] = b"%06o\0 " % sum(huge[:512])
    write("extract", "huge-size.tar", bytes(huge))
    # base-256 size (GNU) far over the limits
    big = bytearray(tar_bytes([({"name": "big"}, b"")]))
    big[124:136] = b"\x80" + (1 << 62).to_bytes(11, "big")
    big[148:156] = b"        "
    big[148:156] = b"%06o\0 " % sum(big[:512])
    write("extract", "base256-size.tar", bytes(big))
    # a sparse member (pax GNU.sparse 0.1): 10 bytes of data at the end of 100 MB
    write("extract", "sparse.tar", tar_bytes([({"name": "sparse", "pax_headers": {
        "GNU.sparse.size": "100000000", "GNU.sparse.numblocks": "1",
        "GNU.sparse.map": "99999990,10", "GNU.sparse.name": "sparse"}}, b"0123456789")],
        fmt=tarfile.PAX_FORMAT))


if __name__ == "__main__":
    for t, fn in (("wire", wire), ("magic", magic), ("manifest", manifest), ("s3xml", s3xml),
                  ("extract", extract), ("download", download)):
        clear(t)
        fn()
        print(t, len(list((CORPUS / t).glob("seed-*"))), "seeds")
