"""S3 request signatures from stages/s3/sigv4.c against botocore's S3SigV4Auth."""
import datetime
import hashlib
import subprocess
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime.datetime(2015, 8, 30, 12, 36, 0)

CASES = [
    # method, host, raw path (bucket/key, unencoded), query pairs, extra headers, body, token
    ("GET", "127.0.0.1:9000", "/bucket/", [("list-type", "2"), ("prefix", "data/a b")], {}, b"", None),
    ("PUT", "127.0.0.1:9000", "/bucket/cifar-10-batches-py/data_batch_1", [], {}, b"x" * 1000, None),
    ("PUT", "s3.us-east-1.amazonaws.com", "/bucket/key with space+plus=eq&amp",
     [("partNumber", "7"), ("uploadId", "2~abc/def+ghi==")],
     {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, b"", None),
    ("HEAD", "bucket.s3.eu-west-1.amazonaws.com", "/my-object//example//photo.user", [], {}, b"", None),
    ("PUT", "localhost:8000", "/b/..//./weird/../\u00fcn\u00efc\u00f6de \u10b4/\u2603", [], {},
     b"payload", None),
    ("POST", "127.0.0.1:9000", "/bucket/k", [("uploads", "")], {}, b"", "FQoGZXIvYXdzEP//token/+=="),
    ("GET", "127.0.0.1:9000", "/bucket/", [("list-type", "2"), ("prefix", ""),
                                          ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")],
     {}, b"", None),
    ("DELETE", "127.0.0.1:9000", "/bucket/~tilde-._", [("uploadId", "x y")], {}, b"", None),
]


def botocore_sign(method, host, path, query, headers, body, token):
    url = f"http://{host}{quote(path, safe='/~')}"
    if query:
        url += "?" + "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query)
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    auth = S3SigV4Auth(Credentials(AK, SK, token), "s3", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        auth.add_auth(req)
    return req, auth


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_signature_matches_botocore(sigv4_tool, case):
    method, host, path, query, headers, body, token = case
    req, auth = botocore_sign(*case)
    want_authz = req.headers["Authorization"]
    del req.headers["Authorization"]  # to recompute botocore's intermediate steps
    signed = auth.headers_to_sign(req)
    payload = req.headers["X-Amz-Content-SHA256"]
    assert payload == hashlib.sha256(body).hexdigest()
    args = [str(sigv4_tool), method, path, req.headers["X-Amz-Date"], "us-east-1", AK, SK, payload]
    for k, v in query:
        args += ["q", k, v]
    for name in signed:
        args += ["h", name, signed[name]]
    p = subprocess.run(args, capture_output=True, text=True, check=True)
    creq, sts, authz = p.stdout.rstrip("\n").split("\n--\n")
    assert creq == auth.canonical_request(req)
    assert sts == auth.string_to_sign(req, auth.canonical_request(req))
    assert authz == want_authz
    assert SK not in p.stdout


def test_s3_path_is_not_normalised(sigv4_tool):
    """S3 signs '//' and '..' as they are; the generic rules would not."""
    req, auth = botocore_sign("GET", "h", "/b/a//../c", [], {}, b"", None)
    del req.headers["Authorization"]
    assert auth.canonical_request(req).split("\n")[1] == "/b/a//../c"
