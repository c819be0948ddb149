"""Fixtures of the S3 tests: one throw-away Ceph RGW for the session
(tests/s3/rgw-start.sh on free ports, data in a fresh temporary folder), a
fresh bucket per test, and the SigV4 test tool built from sigv4_sign.c."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import rgwctl  # noqa: E402
from pkutil import ROOT, run_cli  # noqa: E402


@pytest.fixture(scope="session")
def rgw():
    missing = rgwctl.missing_binaries()
    if missing:
        pytest.skip("Ceph RGW not installed (missing: " + ", ".join(missing) +
                    "); apt-get install radosgw ceph-mon ceph-osd curl")
    r = rgwctl.RGW(memstore_bytes=8 << 30).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def bucket(rgw):
    """A fresh bucket; emptied (objects and multipart uploads) afterwards."""
    name = "t-" + uuid.uuid4().hex[:12]
    s3 = rgw.client()
    s3.create_bucket(Bucket=name)
    yield name
    try:
        for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=name)
    except Exception:
        pass
    rgw.gc()


@pytest.fixture
def s3env(rgw, tmp_path):
    """Environment for pipekernel: the test keys, no ~/.aws files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=rgw.access_key, AWS_SECRET_ACCESS_KEY=rgw.secret_key,
               AWS_REGION="us-east-1", HOME=str(tmp_path / "home"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
               AWS_CONFIG_FILE=str(tmp_path / "no-config"))
    return env


@pytest.fixture
def pk(pk_bin, s3env):
    """run_cli with the S3 environment; the secret must never be printed."""
    def run(*cells, env=None, secret=None, **kw):
        e = dict(s3env)
        if env:
            e.update(env)
        p = run_cli(*cells, env=e, **kw)
        for s in {secret or "", s3env["AWS_SECRET_ACCESS_KEY"]} - {""}:
            assert s not in p.stdout and s not in p.stderr, "a secret was printed"
        return p
    run.env = s3env
    return run


@pytest.fixture(scope="session")
def sigv4_tool(tmp_path_factory):
    out = tmp_path_factory.mktemp("sigv4") / "sigv4_sign"
    subprocess.run(["cc", "-std=c11", "-O1", "-o", str(out), str(HERE / "sigv4_sign.c"),
                    str(ROOT / "stages" / "s3" / "sigv4.c"),
                    str(ROOT / "stages" / "lib" / "dynbuf.c"), "-I", str(ROOT / "stages"), "-lcrypto"], check=True)
    return out
