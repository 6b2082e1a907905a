"""What the benchmarks' fixtures share: a JSON handler on HTTP/1.1 keep-alive with Nagle's
delay off (else about 40 ms that is not the relay's lands on every answer), a threaded server
on a free port of 127.0.0.1 that prints the port on its first line of stdout, and a rate limit
counted in fixed windows (as Okta's, Graph's and the SaaS targets' are)."""
import http.server
import json
import socketserver
import threading
import time


class JsonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    content_type = "application/json"

    def log_message(self, *a):
        pass

    def reply(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(handler):
    server = Server(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class FixedWindow:
    """Requests counted in fixed windows of `seconds`."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start, self.used = 0, 0
        self.lock = threading.Lock()

    def take(self, limit):
        """Counts a request against `limit`: whether it fits, the requests the window has used,
        when it ends (epoch seconds), and the whole seconds until then (at least 1)."""
        now = time.time()
        start = int(now // self.seconds) * self.seconds
        with self.lock:
            if self.start != start:
                self.start, self.used = start, 0
            allowed = self.used < limit
            self.used += int(allowed)
            used = self.used
        end = start + self.seconds
        return allowed, used, end, max(1, int(end - now + 0.999))
