"""A fault-injecting HTTP proxy between pipekernel and the test RGW.

pipekernel is pointed at the proxy (--endpoint http://127.0.0.1:PORT); the
proxy forwards each request to the gateway with its headers unchanged (the
Host header is part of the SigV4 signature, so the gateway checks the
signature pipekernel made) and returns the answer, unless a rule says
otherwise:

    p = FaultProxy(rgw.endpoint)
    p.rule(action="503", times=3)                          # the first 3 requests
    p.rule(action="500", part=2, times=None)               # UploadPart 2, always
    p.rule(action="drop", part=2, times=1)                 # cut part 2 mid-body, once
    p.rule(action="delay", seconds=0.2, method="PUT")      # slow every PUT

Answers to GETs can be spoiled after forwarding: "corrupt" (one byte of the
body flipped, the headers as the gateway sent them: bytes changed behind the
ETag), "badrange" (Content-Range moved by one byte), "short" (half the body,
then the connection closed), "extra" (the body with 16 more bytes),
"wrongetag" (another ETag); `range_from=N` matches a request whose Range
starts at byte N.

Actions: "503" (S3 SlowDown XML), "500" (InternalError), "400"
(InvalidRequest), "200error" (200 with an InternalError document, as
CompleteMultipartUpload may answer), "drop" (reads half the body, then resets the connection),
"delay" (waits, then forwards), "listsame" and "listempty" (a ListObjectsV2 page that
is truncated and has no key, with the token just sent or a new one each time: a listing
that never ends). A rule matches by method, part number,
key (the end of the path) and a query parameter that must be present (None: any), `times` times (None: always); the first matching rule with
times left applies. Every request is logged as (time, method, query, action or
status) in p.log. When the gateway is unreachable the client's connection is
closed without an answer, as if the server were gone."""
import http.client
import http.server
import socket
import struct
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade"}

ERRORS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "400": (400, "InvalidRequest", "The part was rejected on purpose by the test proxy."),
    # CompleteMultipartUpload may answer 200 and then an error document
    "200error": (200, "InternalError", "We encountered an internal error. Please try again."),
}


def _shift_range(v):
    """bytes A-B/T -> bytes A+1-B+1/T"""
    try:
        unit, rest = v.split(" ", 1)
        span, total = rest.split("/")
        a, b = span.split("-")
        return f"{unit} {int(a) + 1}-{int(b) + 1}/{total}"
    except ValueError:
        return v


class Rule:
    def __init__(self, action, times=1, method=None, part=None, key=None, param=None,
                 seconds=0.0, range_from=None):
        self.action, self.times, self.method, self.part = action, times, method, part
        self.key, self.param, self.seconds = key, param, seconds
        self.range_from = range_from

    def matches(self, method, path, query, rng=""):
        if self.range_from is not None and not (rng or "").startswith(f"bytes={self.range_from}-"):
            return False
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method != method:
            return False
        if self.key is not None and not path.endswith("/" + self.key):
            return False
        if self.part is not None and query.get("partNumber") != str(self.part):
            return False
        if self.param is not None and self.param not in query:
            return False
        return True


class FaultProxy:
    def __init__(self, upstream):
        u = urllib.parse.urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.rules = []
        self.log = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reset(self):
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()

            def handle_any(self):
                method = self.command
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                n = int(self.headers.get("Content-Length") or 0)
                rule = outer.take(method, urllib.parse.unquote(url.path), query,
                                  self.headers.get("Range", ""))
                action = rule.action if rule else None
                with outer.lock:
                    outer.log.append((time.monotonic(), method, query, action or "forward"))
                if action == "drop":
                    self.rfile.read(n // 2)
                    self.reset()
                    return
                body = self.rfile.read(n) if n else b""
                if action in ("listsame", "listempty"):
                    # ListObjectsV2 that never ends: truncated, no key, and the
                    # token just sent (listsame) or a new one each time (listempty)
                    tok = (query.get("continuation-token", "t0") if action == "listsame"
                           else f"t{len(outer.log)}")
                    x = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                         f"<Name>b</Name><Prefix>{query.get('prefix', '')}</Prefix><KeyCount>0</KeyCount>"
                         f"<IsTruncated>true</IsTruncated><NextContinuationToken>{tok}"
                         "</NextContinuationToken></ListBucketResult>").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(x)))
                    self.end_headers()
                    self.wfile.write(x)
                    return
                if action in ERRORS:
                    code, ecode, msg = ERRORS[action]
                    x = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{ecode}</Code>'
                         f"<Message>{msg}</Message><RequestId>faultproxy</RequestId></Error>").encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(x)))
                    self.end_headers()
                    if method != "HEAD":
                        self.wfile.write(x)
                    return
                if action == "delay":
                    time.sleep(rule.seconds)
                try:
                    c = http.client.HTTPConnection(outer.up_host, outer.up_port, timeout=60)
                    hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    c.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in hdrs.items():
                        c.putheader(k, v)
                    c.endheaders(body if n else None)
                    r = c.getresponse()
                    data = r.read()
                    rh = r.getheaders()
                    status, reason = r.status, r.reason
                    c.close()
                except OSError:
                    self.reset()  # the gateway is gone: so is the answer
                    return
                declared = len(data)
                if action == "corrupt" and data:
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + \
                        data[len(data) // 2 + 1:]
                elif action == "extra":
                    data += b"x" * 16
                    declared = len(data)
                elif action == "badrange":
                    rh = [(k, _shift_range(v) if k.lower() == "content-range" else v) for k, v in rh]
                elif action == "wrongetag":
                    rh = [(k, '"00000000000000000000000000000000"' if k.lower() == "etag" else v)
                          for k, v in rh]
                self.send_response(status, reason)
                for k, v in rh:
                    if k.lower() not in HOP and (k.lower() != "content-length" or method == "HEAD"):
                        self.send_header(k, v)
                if method != "HEAD":
                    self.send_header("Content-Length", str(declared))
                self.end_headers()
                if method != "HEAD" and action == "short":
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.reset()
                elif method != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # connections reset on purpose

        self.httpd = Server(("127.0.0.1", 0), H)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def rule(self, action, times=1, method=None, part=None, key=None, param=None, seconds=0.0,
             range_from=None):
        with self.lock:
            self.rules.append(Rule(action, times, method, part, key, param, seconds, range_from))

    def take(self, method, path, query, rng=""):
        with self.lock:
            for r in self.rules:
                if r.matches(method, path, query, rng):
                    if r.times is not None:
                        r.times -= 1
                    return r
        return None

    def requests(self, method=None, part=None):
        """The log entries of one kind of request."""
        with self.lock:
            return [e for e in self.log if (method is None or e[1] == method) and
                    (part is None or e[2].get("partNumber") == str(part))]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
