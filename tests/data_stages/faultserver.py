"""A small HTTP server that fails on purpose (for what nginx cannot do):
/cut: the first answer stops halfway (connection closed), later ones honour Range;
/flaky: the first two answers are 500, then 200;
/norange: ignores Range (always 200 with the whole body) and cuts the first answer."""
import http.server
import threading


class FaultServer:
    def __init__(self, payload):
        self.payload = payload
        self.hits = {}
        self.ranges = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path
                n = outer.hits[path] = outer.hits.get(path, 0) + 1
                body = outer.payload
                rng = self.headers.get("Range")
                outer.ranges.append((path, rng))
                if path == "/flaky" and n <= 2:
                    self.send_response(500)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"oops\n")
                    return
                start = 0
                if rng and path != "/norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if path in ("/cut", "/norange") and n == 1:
                    self.wfile.write(part[:len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
