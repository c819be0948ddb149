"""Start and stop the test RGW (tests/s3/rgw-start.sh, rgw-stop.sh) from Python.
Used by the S3 tests' fixture and by bench/bench_s3.py."""
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = HERE / "rgw-start.sh"
STOP = HERE / "rgw-stop.sh"


def missing_binaries():
    return [b for b in ("radosgw", "ceph-mon", "ceph-osd", "radosgw-admin", "curl")
            if shutil.which(b) is None]


def _free_pair():
    """A port P with P+1 free too (RGW on P, the mon on P+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p > 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free pair of ports")


class RGW:
    def __init__(self, memstore_bytes=None):
        # short path: admin sockets are AF_UNIX
        self.dir = Path(tempfile.mkdtemp(prefix="pkrgw", dir="/tmp"))
        self.port = None
        self.env = {}
        self.memstore_bytes = memstore_bytes

    def start(self):
        e = dict(os.environ)
        if self.memstore_bytes:
            e["MEMSTORE_BYTES"] = str(self.memstore_bytes)
        for attempt in range(3):
            self.port = _free_pair()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir()
            p = subprocess.run([str(START), str(self.port), str(self.dir)], env=e,
                               capture_output=True, text=True, timeout=180)
            if p.returncode == 0:
                break
            if "already in use" not in p.stderr or attempt == 2:
                raise RuntimeError(f"rgw-start.sh failed ({p.returncode}):\n{p.stderr}")
        for line in p.stdout.splitlines():
            if line.startswith("export "):
                k, v = line[7:].split("=", 1)
                self.env[k] = v
        self.endpoint = self.env["S3_ENDPOINT"]
        self.access_key = self.env["AWS_ACCESS_KEY_ID"]
        self.secret_key = self.env["AWS_SECRET_ACCESS_KEY"]
        return self

    def kill_gateway(self):
        """SIGKILL radosgw only: the cluster and its data stay."""
        subprocess.run([str(STOP), str(self.dir), "--kill", "--only", "rgw"], check=True,
                       timeout=60)

    def restart_gateway(self):
        p = subprocess.run([str(START), "--rgw-only", str(self.dir)], capture_output=True,
                           text=True, timeout=180)
        if p.returncode:
            raise RuntimeError(f"rgw-start.sh --rgw-only failed:\n{p.stderr}")

    def gc(self):
        subprocess.run(["radosgw-admin", "-c", str(self.dir / "ceph.conf"), "gc", "process",
                        "--include-all"], capture_output=True, timeout=300)

    def stop(self):
        subprocess.run([str(STOP), str(self.dir), "--purge"], timeout=120)

    def client(self, secret=None, **cfg):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret or self.secret_key,
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, **cfg))
