"""%upload through a fault-injecting proxy (tests/s3/faultproxy.py) in front of
the real RGW: 503 SlowDown, a part rejected once or always, connections
dropped mid-request; and the gateway killed in the middle of a multipart
upload. Objects are read back and multipart uploads listed with boto3 straight
from the gateway."""

import pytest
from faultproxy import FaultProxy
from test_upload import (md5, no_multipart_left, rand_file, read_back,
                         upload_killing_gateway)

MiB = 1 << 20


@pytest.fixture
def proxy(rgw):
    p = FaultProxy(rgw.endpoint)
    yield p
    p.close()


@pytest.fixture
def tree(tmp_path):
    """Two small files and one of 3 parts at --part-size 5 --threshold 5."""
    t = tmp_path / "t"
    rand_file(t / "a.bin", 1000)
    rand_file(t / "b.bin", 70000)
    rand_file(t / "big.bin", 12 * MiB + 5)
    return t


def upload(pk, tree, bucket, endpoint, *extra):
    return pk(f"%upload {tree} s3://{bucket}/p --endpoint {endpoint} --part-size 5 --threshold 5 "
              + " ".join(extra))


def all_intact(rgw, bucket, tree):
    s3 = rgw.client()
    files = sorted(f for f in tree.rglob("*") if f.is_file())
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == [f"p/{f.relative_to(tree)}" for f in files]
    for f in files:
        assert read_back(s3, bucket, f"p/{f.relative_to(tree)}") == md5(f), f
    assert no_multipart_left(s3, bucket)


def nothing_left(rgw, bucket):
    s3 = rgw.client()
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_proxy_passes_through(rgw, bucket, pk, proxy, tree):
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    assert len(proxy.requests("PUT", part=3)) == 1 and len(proxy.requests("PUT")) == 5


def test_slowdown_first_requests(rgw, bucket, pk, proxy, tree):
    proxy.rule("503", times=4)
    p = upload(pk, tree, bucket, proxy.endpoint, "--jobs 1")
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    log = proxy.log
    assert [e[3] for e in log[:4]] == ["503"] * 4 and log[4][3] == "forward"
    # the same request four times over, further apart each time (backoff 0.25 s, 0.5 s,
    # 1 s ... times 0.75 to 1.25: the gaps are at least 0.1875, 0.375, 0.75 s)
    assert len({(e[1], tuple(sorted(e[2].items()))) for e in log[:5]}) == 1
    gaps = [b[0] - a[0] for a, b in zip(log[:4], log[1:5])]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.37 and gaps[2] >= 0.74, gaps


def test_slowdown_on_one_part(rgw, bucket, pk, proxy, tree):
    proxy.rule("503", times=2, method="PUT", part=2)
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    assert [e[3] for e in proxy.requests("PUT", part=2)] == ["503", "503", "forward"]
    assert (f"upload: UploadPart 2 of s3://{bucket}/p/big.bin: HTTP 503 SlowDown; retry 2 of 4 in "
            in p.stderr)
    assert len(proxy.requests("PUT", part=1)) == 1


def test_part_rejected_once_is_retried(rgw, bucket, pk, proxy, tree):
    proxy.rule("500", times=1, method="PUT", part=2)
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    assert [e[3] for e in proxy.requests("PUT", part=2)] == ["500", "forward"]


@pytest.mark.parametrize("action,status,code,attempts", [
    ("500", 500, "InternalError", 5),   # retryable: every attempt used
    ("400", 400, "InvalidRequest", 1),  # a client error: not retried
])
def test_part_rejected_always_fails_cleanly(rgw, bucket, pk, proxy, tree, action, status,
                                            code, attempts):
    proxy.rule(action, times=None, method="PUT", part=2)
    p = upload(pk, tree, bucket, proxy.endpoint, "--jobs 1")
    assert p.returncode == 1
    assert f"S3Error: s3://{bucket}/p/big.bin: UploadPart 2: HTTP {status} {code}" in p.stderr
    assert f"key 'p/big.bin'" in p.stderr
    assert (f"after {attempts} attempts" in p.stderr) == (attempts > 1)
    assert len(proxy.requests("PUT", part=2)) == attempts
    # the multipart upload was aborted: no orphan on the gateway
    assert len(proxy.requests("DELETE")) == 1
    assert no_multipart_left(rgw.client(), bucket)
    assert "could not be aborted" not in p.stderr


def test_complete_answering_200_with_an_error_is_retried(rgw, bucket, pk, proxy, tree):
    proxy.rule("200error", times=2, method="POST", param="uploadId")
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    assert [e[3] for e in proxy.requests("POST") if "uploadId" in e[2]] == \
        ["200error", "200error", "forward"]
    assert (f"upload: CompleteMultipartUpload of s3://{bucket}/p/big.bin: HTTP 200 InternalError; "
            "retry 2 of 4") in p.stderr


def test_connection_dropped_mid_part_is_retried(rgw, bucket, pk, proxy, tree):
    proxy.rule("drop", times=2, method="PUT", part=3)
    proxy.rule("drop", times=1, method="PUT", key="p/a.bin")  # a single PUT
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 0, p.stderr
    all_intact(rgw, bucket, tree)
    assert [e[3] for e in proxy.requests("PUT", part=3)] == ["drop", "drop", "forward"]
    assert len(proxy.requests("PUT")) == 5 + 3


def test_connection_always_dropped_fails_cleanly(rgw, bucket, pk, proxy, tree):
    proxy.rule("drop", times=None, method="PUT", part=1)
    p = upload(pk, tree, bucket, proxy.endpoint)
    assert p.returncode == 1
    assert f"NetworkError: s3://{bucket}/p/big.bin: UploadPart 1 failed after 5 attempts" in p.stderr
    assert no_multipart_left(rgw.client(), bucket)
    assert_bar_short_of_full(p)


def assert_bar_short_of_full(p):
    """The bar of a failed upload ends at what the server acknowledged,
    never at "100%" (a refused last part was all sent, not stored)."""
    bar = [ln for ln in p.stderr.replace("\r", "\n").splitlines() if ln.startswith("upload s3://")]
    assert bar and bar[-1].endswith("failed") and "100%" not in bar[-1], bar[-1:]


def test_last_part_refused_after_everything_was_sent(rgw, bucket, pk, proxy, tree):
    proxy.rule("400", times=None, method="PUT", part=3)
    p = upload(pk, tree, bucket, proxy.endpoint, "--jobs 1")
    assert p.returncode == 1
    assert f"S3Error: s3://{bucket}/p/big.bin: UploadPart 3: HTTP 400 InvalidRequest" in p.stderr
    assert no_multipart_left(rgw.client(), bucket)
    assert_bar_short_of_full(p)


@pytest.mark.slow
def test_gateway_killed_mid_multipart_then_rerun(rgw, bucket, pk, proxy, tmp_path):
    """The gateway dies between parts: the upload fails after its retries, the abort
    cannot reach the gateway (the error says so), and a re-run with --skip-existing
    aborts the orphan upload and finishes."""
    f = rand_file(tmp_path / "t" / "big.bin", 40 * MiB)
    s3 = rgw.client()
    proxy.rule("delay", times=None, method="PUT", seconds=0.3)  # a wide window
    cmd = (f"%upload {tmp_path / 't'} s3://{bucket}/k --endpoint {proxy.endpoint} "
           "--part-size 5 --threshold 5 --jobs 1")
    def parts_done():
        ups = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return ups and len(s3.list_parts(Bucket=bucket, Key=ups[0]["Key"],
                                         UploadId=ups[0]["UploadId"]).get("Parts", [])) >= 2
    proc, out, err = upload_killing_gateway(pk, rgw, cmd, parts_done, "two parts uploaded")
    assert proc.returncode == 1, (out, err)
    assert f"NetworkError: s3://{bucket}/k/big.bin: UploadPart" in err and "after 5 attempts" in err
    assert "the unfinished multipart upload of k/big.bin could not be aborted" in err
    s3 = rgw.client()
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1  # the orphan
    p = pk(cmd + " --skip-existing")
    assert p.returncode == 0, p.stderr
    assert "aborted 1 unfinished multipart upload of an earlier run" in p.stderr
    assert read_back(s3, bucket, "k/big.bin") == md5(f)
    assert no_multipart_left(s3, bucket)


@pytest.mark.parametrize("action,why", [("listsame", "repeats the token just sent"),
                                        ("listempty", "truncated listing pages in a row")])
def test_listing_that_never_ends(rgw, bucket, pk, proxy, tree, action, why):
    """A server that keeps answering "truncated" without progress is an error,
    in %s3ls and in the existence check of %upload --skip-existing."""
    proxy.rule(action=action, method="GET", param="list-type", times=None)
    p = pk(f"%s3ls s3://{bucket}/p --endpoint {proxy.endpoint}")
    assert p.returncode != 0 and "FormatError" in p.stderr and why in p.stderr, p.stderr
    assert len(proxy.requests("GET")) <= 101
    p = upload(pk, tree, bucket, proxy.endpoint, "--skip-existing")
    assert p.returncode != 0 and why in p.stderr, p.stderr
    assert not proxy.requests("PUT")  # nothing uploaded on a listing it could not trust
