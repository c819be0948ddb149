#!/usr/bin/env python3
"""make_cases.py -- write the refusal case folders of tests/data:

    tests/data/<kind>/invalid/<case>/input    the bytes to refuse
    tests/data/<kind>/invalid/<case>/error    what the error must say: each
                                              line a part of "Ename: where:
                                              text" (or, for wire, of the
                                              reason the message is dropped)

for kind = archive (what %extract refuses), manifest (md5sum manifests),
s3xml (S3 response bodies; the case name starts with the request whose answer
it is) and wire (Jupyter messages, frames joined by "\\n--\\n" as the wire fuzz
target reads them; a signature frame "SIGNED" is replaced by the right HMAC
with the key "secret-key" before parsing). tests/test-cases.c reads them; the
pickle cases come from tests/load/make_cases.py.

The output is deterministic: run it again after changing a case here and
commit what changed. A case can also be added by hand: it is two files.
"""
import bz2
import gzip
import io
import pathlib
import shutil
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def write_case(kind, name, data, error):
    d = HERE / kind / "invalid" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "input").write_bytes(data if isinstance(data, bytes) else data.encode())
    (d / "error").write_text(error.rstrip("\n") + "\n")


# ---- archives ---------------------------------------------------------------
def tar_bytes(members):
    """A GNU tar of (name, data, attributes) members, mtime 0, cut after
    its end-of-archive blocks (no padding to 10 KiB)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, kw in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            for k, v in kw.items():
                setattr(ti, k, v)
            if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
        end = t.offset
    return buf.getvalue()[:end] + b"\0" * 1024


def f(name, data=b"evil"):
    return (name, data, {})


def link(name, target, kind=tarfile.SYMTYPE):
    return (name, b"", {"type": kind, "linkname": target})


def folder(name):
    return (name, b"", {"type": tarfile.DIRTYPE})


ABSOLUTE = "/tmp/pipekernel-case-absolute"   # tests/test-cases.c checks it never appears

ARCHIVES = {
    "dotdot": ([f("../x")], 'UnsafeInputError:\ncontains ".."'),
    "dotdot-deep": ([f("ok.txt", b"fine"), f("a/../../x")], 'UnsafeInputError:\n".."'),
    "absolute": ([f(ABSOLUTE)], "UnsafeInputError:\nabsolute path"),
    "symlink-out": ([link("l", "../")], "UnsafeInputError:\nleads out of"),
    "symlink-abs": ([link("l", "/tmp")], "UnsafeInputError:\nleads out of"),
    "symlink-up-relative": ([link("l", ".."), f("l/x")], "UnsafeInputError:\nleads out of"),
    "write-through-inner-symlink": ([folder("sub"), link("l", "sub"), f("l/x")],
                                    "UnsafeInputError:\nthrough a symlink"),
    "symlink-then-write": ([link("l", "."), f("l/x", b"through the link")],
                           "UnsafeInputError:\nsymlink"),
    "symlink-order": ([link("up", "a/../.."), link("a", ".")], "UnsafeInputError:\nleads out of"),
    "hardlink-out": ([link("h", "../victim", tarfile.LNKTYPE)], "UnsafeInputError:\nleads out of"),
    "hardlink-abs": ([link("h", "/etc/passwd", tarfile.LNKTYPE)], "UnsafeInputError:\nleads out of"),
    "chardev": ([("null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
                "UnsafeInputError:\ndevice node"),
    "blockdev": ([("sda", b"", {"type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0})],
                 "UnsafeInputError:\ndevice node"),
    "fifo": ([("pipe", b"", {"type": tarfile.FIFOTYPE})], "UnsafeInputError:\nfifo"),
    "too-deep": ([f("/".join(["d"] * 40) + "/x", b"deep")],
                 "LimitError:\nis nested deeper than 32"),
    # a name that would print a fake line and clear the terminal: shown escaped
    "control-bytes-in-name": ([link("evil\x1b[2J\nextract: 1 file in 0.00 s\x1b]0;x\x07", "/tmp")],
                              "UnsafeInputError:\n"
                              "evil\\x1b[2J\\x0aextract: 1 file in 0.00 s\\x1b]0;x\\x07\" -> \"/tmp\" leads out of"),
}


def archives():
    for name, (members, error) in ARCHIVES.items():
        data = tar_bytes(members)
        write_case("archive", name, data, error)
        write_case("archive", name + "-gz", gzip.compress(data, 9, mtime=0), error)
    write_case("archive", "not-an-archive", b"this is plain text, not an archive\n" * 20,
               "FormatError:\nnot an archive libarchive can read")
    # 80 MiB of zeros in a few hundred bytes of bzip2: past 64 MiB the ratio counts
    bomb = tar_bytes([f("zeros.bin", bytes(80 << 20))])
    write_case("archive", "expands-too-much-bz2", bz2.compress(bomb, 9),
               'LimitError:\nmember "zeros.bin": \narchive bytes, more than 200 per byte (PK_LIMIT_EXTRACT_RATIO)')


# ---- manifests --------------------------------------------------------------
MANIFESTS = {
    "not-a-line": (f"{MD5}  ok\nnot a line\n", "FormatError: input:2: expected"),
    "bad-hex": ("z" + MD5[1:] + "  x\n", "FormatError: input:1: expected 32 hex digits"),
    "short-digest": (f"\n{MD5[:31]}  a\n", "FormatError: input:2: expected 32 hex digits"),
    "tab-separator": (f"{MD5}\tname\n", "FormatError: input:1: expected two spaces"),
    "absolute-path": (f"{MD5}  /etc/passwd\n", "UnsafeInputError: input:1:\nabsolute"),
    "dotdot": (f"\n\n{MD5}  a/../../x\n", 'UnsafeInputError: input:3:\n".."'),
    "listed-twice": (f"{MD5}  a\n{MD5}  b\n{MD5}  ./a\n",
                     "FormatError: input:3:\nlisted twice (also on line 1)"),
    "nul-in-line": (f"{MD5}  a\0b\n", "FormatError: input:1: NUL byte in the line"),
    "escaped-dotdot": (f"\\{MD5}  \\.\\./x\n", 'UnsafeInputError: input:1:\n".."'),
    "binary-mode-absolute": (f"{MD5} */etc/passwd\n", "UnsafeInputError: input:1:\nabsolute"),
    "no-path": (f"{MD5}  \n", "FormatError: input:1: expected two spaces"),
    "control-bytes-in-path": (f"{MD5}  /\x1b[2J\x1b]0;x\x07etc\u202e\n",
                              'UnsafeInputError: input:1:\n"/\\x1b[2J\\x1b]0;x\\x07etc\\u202e"'),
}


# ---- S3 response bodies -------------------------------------------------------
S3XML = {
    "ListObjectsV2-not-xml": ("<html><body>gateway error", "FormatError: s3://bucket/: malformed XML in the S3 response"),
    "ListObjectsV2-empty-body": ("", "FormatError: s3://bucket/: malformed XML"),
    "ListObjectsV2-error-document": (
        "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
        "FormatError: s3://bucket/: ListObjectsV2 answered <Error>, expected <ListBucketResult>"),
    "ListObjectsV2-truncated-without-token": (
        "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>k</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        "FormatError: s3://bucket/: a truncated listing without NextContinuationToken"),
    "ListObjectsV2-entity-expansion": (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 16 + '">' for i in range(8))
        + "]><ListBucketResult><Contents><Key>&i;</Key></Contents></ListBucketResult>",
        "FormatError: s3://bucket/: malformed XML in the S3 response"),
    "CreateMultipartUpload-without-upload-id": (
        "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
        "</InitiateMultipartUploadResult>",
        "FormatError: s3://bucket/: CreateMultipartUpload answered without an UploadId"),
    "CompleteMultipartUpload-truncated": (
        '<CompleteMultipartUploadResult><ETag>"e"',
        "FormatError: s3://bucket/: malformed XML"),
    "ListMultipartUploads-two-roots": (
        "<ListMultipartUploadsResult/><ListMultipartUploadsResult/>",
        "FormatError: s3://bucket/: malformed XML"),
}


# ---- Jupyter messages ---------------------------------------------------------
HDR = '{"msg_id":"1","msg_type":"kernel_info_request"}'


def msg(*frames):
    return "\n--\n".join(frames)


def signed(header=HDR, parent="{}", metadata="{}", content="{}"):
    return msg("client-1", "<IDS|MSG>", "SIGNED", header, parent, metadata, content)


WIRE = {
    "header-not-json": (signed('{"msg_id":"1"'), "header is not valid JSON"),
    "header-not-an-object": (signed("[1]"), "not a JSON object"),
    "header-without-msg-type": (signed('{"msg_id":"1"}'), "msg_type"),
    "header-without-msg-id": (signed('{"msg_type":"x"}'), "msg_id"),
    "content-invalid-utf8": (signed(content='{"code":"\udcff"}'), "content is not valid JSON"),
    "content-duplicate-key": (signed(content='{"a":1,"a":2}'), "content is not valid JSON"),
    "signature-wrong": (msg("client-1", "<IDS|MSG>", "0" * 64, HDR, "{}", "{}", "{}"),
                        "does not match"),
    "signature-short": (msg("client-1", "<IDS|MSG>", "0" * 63, HDR, "{}", "{}", "{}"),
                        "63 bytes; expected 64"),
    "no-delimiter": (msg("client-1", "<IDS|MSG", "SIGNED", HDR, "{}", "{}", "{}"),
                     "delimiter"),
    "content-missing": (msg("client-1", "<IDS|MSG>", "0" * 64, HDR, "{}", "{}"),
                        "after the delimiter"),
}


def main():
    for kind in ("archive", "manifest", "s3xml", "wire"):
        shutil.rmtree(HERE / kind / "invalid", ignore_errors=True)
    archives()
    for name, (text, error) in MANIFESTS.items():
        write_case("manifest", name, text, error)
    for name, (text, error) in S3XML.items():
        write_case("s3xml", name, text, error)
    for name, (text, error) in WIRE.items():
        # surrogateescape: a lone "\udcff" is the byte 0xff (invalid UTF-8)
        write_case("wire", name, text.encode("utf-8", "surrogateescape"), error)


if __name__ == "__main__":
    main()
