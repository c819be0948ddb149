"""Fixtures of the data-stage tests: a generated dataset and a real nginx on loopback."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkutil import free_port, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultserver import FaultServer  # noqa: E402

NGINX = "/usr/sbin/nginx"


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, pk_bin):
    """%mkdata with 2 train batches of 500 images: (dir, tarball path)."""
    d = tmp_path_factory.mktemp("mkdata") / "data"
    run_cli(f"%mkdata {d} --train-batches 2 --images-per-batch 500 --seed 3", check=True)
    return d, d / "cifar-10-python.tar.gz"


@pytest.fixture
def fault(small_data):
    """A fault-injecting HTTP server (faultserver.py) serving the small tarball."""
    _, tgz = small_data
    s = FaultServer(tgz.read_bytes())
    yield s
    s.close()


class Nginx:
    def __init__(self, root, port, base, tls_port):
        self.root, self.port, self.base = Path(root), port, base
        self.url = f"http://127.0.0.1:{port}"
        self.tls_url = f"https://127.0.0.1:{tls_port}"
        self.cacert = base / "cert.pem"  # self-signed, for --cacert


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    """nginx serving a folder on 127.0.0.1:<free port>; /slow/ is rate-limited."""
    if not os.path.exists(NGINX):
        pytest.fail(f"{NGINX} missing: apt-get install nginx")
    base = tmp_path_factory.mktemp("nginx")
    root = base / "www"
    root.mkdir()
    (root / "slow").symlink_to(root)
    for d in ("tmp", "logs"):
        (base / d).mkdir()
    port, tls_port = free_port(), free_port()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
                   check=True, capture_output=True)
    conf = base / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {base}/logs/access.log;
  client_body_temp_path {base}/tmp/body;
  proxy_temp_path {base}/tmp/proxy;
  fastcgi_temp_path {base}/tmp/fastcgi;
  uwsgi_temp_path {base}/tmp/uwsgi;
  scgi_temp_path {base}/tmp/scgi;
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    disable_symlinks off;
    location /slow/ {{ limit_rate 200k; }}
    location = /error500 {{ return 500; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {base}/cert.pem;
    ssl_certificate_key {base}/key.pem;
    root {root};
  }}
}}
""")
    p = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(base)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import socket
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if p.poll() is not None:
                pytest.fail("nginx did not start: " + p.stderr.read().decode())
            time.sleep(0.05)
    try:
        yield Nginx(root, port, base, tls_port)
    finally:
        p.send_signal(signal.SIGQUIT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
