"""What the benchmarks' fixtures share: a JSON handler on HTTP/1.1 keep-alive with Nagle's
delay off (else about 40 ms that is not the relay's lands on every answer), and a threaded
server on a free port of 127.0.0.1 that prints the port on its first line of stdout."""
import http.server
import json
import socketserver


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
