"""A small HTTP server that fails on purpose (for what nginx cannot do):
/cut: the first answer stops halfway (connection closed), later ones honour Range;
/flaky: the first two answers are 500, then 200;
/norange: ignores Range (always 200 with the whole body) and cuts the first answer;
/short: every answer announces its whole length and sends half of it, then closes;
/stall: every answer sends half its body, then stalls (neither sends nor closes);
/stall1: the first answer stalls like /stall, later ones honour Range;
/503: every answer is 503 SlowDown;
/die: the first answer stops halfway and the server dies (nothing listens any more);
/badrange: the first answer is cut; a Range request is answered 206 from byte 0
           (Content-Range says so), as a broken cache might;
/gaprange: the first answer is cut; a Range request is answered 206 from 1000 bytes
           further than asked (Content-Range says so).
The resumes that could splice two files (every first answer is cut halfway and
carries ETag "v1" and a Last-Modified; `other` is another file of the same length):
/etag: later answers honour Range and If-Range (206 while If-Range is "v1");
/lastmod: the same without an ETag (If-Range must be the Last-Modified);
/changed: the file is `other` (ETag "v2") from the second answer on, and If-Range is
          honoured: a Range request whose If-Range is not "v2" gets all of it (200);
/changed-ifrange-ignored: the same, but a Range request gets a 206 of `other`
          (ETag "v2") whatever If-Range says;
/total: a Range request gets a 206 whose Content-Range total is 1000 bytes more
        (a longer file);
/longbody: a 206 with the right Content-Range but 1000 more bytes, as its
           Content-Length says;
/longbody-close: the same without Content-Length (the end is the connection closing);
/backwards: a 206 whose Content-Range ends 10 bytes before it starts.
Any other path serves the payload (honouring Range). `if_ranges` lists (path, If-Range)."""
import http.server
import socket
import struct
import threading


class FaultServer:
    def __init__(self, payload):
        self.payload = payload
        self.other = bytes(b ^ 0x5A for b in payload)
        self.hits = {}
        self.ranges = []
        self.if_ranges = []
        self.release = threading.Event()  # ends the stalls
        self.dead = False
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def cut(self, data, reset=False):
                self.wfile.write(data)
                self.wfile.flush()
                self.close_connection = True
                if reset:  # a process that dies: RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(2)

            def splice(self, path, n, rng):
                """The resumes that could splice two files (see the module's text)."""
                body, etag = outer.payload, '"v1"'
                if path.startswith("/changed") and n > 1:
                    body, etag = outer.other, '"v2"'
                ifr = self.headers.get("If-Range")
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if path == "/changed" and rng and ifr != etag:
                    start, rng = 0, None  # If-Range does not match: the whole file
                if path in ("/etag", "/lastmod") and rng and ifr is not None and ifr != (
                        etag if path == "/etag" else "Wed, 21 Oct 2015 07:28:00 GMT"):
                    start, rng = 0, None
                length = None
                total, end = len(body), len(body) - 1
                part = body[start:]
                if rng:
                    self.send_response(206)
                    if path == "/total":
                        total += 1000
                        part = (body + b"x" * 1000)[start:]
                        end = total - 1
                    elif path == "/backwards":
                        end = start - 10
                    elif path.startswith("/longbody"):
                        part = part + b"y" * 1000
                    self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                else:
                    self.send_response(200)
                if path != "/lastmod":
                    self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
                if path != "/longbody-close" or not rng:
                    length = len(part)
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if n == 1:
                    self.cut(part[:len(part) // 2])
                    return
                self.wfile.write(part)
                if length is None:
                    self.cut(b"")

            def do_GET(self):
                path = self.path
                n = outer.hits[path] = outer.hits.get(path, 0) + 1
                body = outer.payload
                rng = self.headers.get("Range")
                outer.ranges.append((path, rng))
                outer.if_ranges.append((path, self.headers.get("If-Range")))
                if path in ("/etag", "/lastmod", "/changed", "/changed-ifrange-ignored", "/total",
                            "/longbody", "/longbody-close", "/backwards"):
                    return self.splice(path, n, rng)
                if (path == "/flaky" and n <= 2) or path == "/503":
                    code = 500 if path == "/flaky" else 503
                    msg = b"oops\n" if code == 500 else b"SlowDown: please reduce your request rate\n"
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                start = 0
                if rng and path == "/badrange":
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
                elif rng and path != "/norange":
                    start = int(rng.split("=")[1].split("-")[0]) + (1000 if path == "/gaprange" else 0)
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                half = part[:len(part) // 2]
                if (path in ("/cut", "/norange", "/badrange", "/gaprange") and n == 1) or path == "/short":
                    self.cut(half)
                    return
                if path == "/stall" or (path == "/stall1" and n == 1):
                    self.wfile.write(half)
                    self.wfile.flush()
                    outer.release.wait(120)
                    self.close_connection = True
                    return
                if path == "/die":
                    self.cut(half, reset=True)
                    outer.dead = True
                    threading.Thread(target=outer.close, daemon=True).start()
                    return
                self.wfile.write(part)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients cut off on purpose

        self.httpd = Server(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
