"""A stand-in for llama-server on the scenario's base host: /health and /completion, as the front
door uses them. Each completion names the host that answered it."""

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/health":
            self._reply({"status": "ok"})
        else:
            self.send_error(404)

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/completion":
            self._reply({"content": f"stub completion from {socket.gethostname()}"})
        else:
            self.send_error(404)


ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
