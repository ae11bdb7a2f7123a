#!/usr/bin/env python3
"""A recording reverse proxy in front of an OpenAI-compatible server (Python stdlib only).

Every request is forwarded to the upstream server unchanged and its answer is sent back
unchanged: nothing here answers for the model. For each request one JSON line is appended to
the log:

    {"n": 1, "method": "POST", "path": "/v1/chat/completions", "status": 200, "ms": 812,
     "client_gone": false, "response_format": "json_object", "usage": {...},
     "finish_reason": "stop", "content": "...", "error": null}

`response_format` is the type the request asked for (`json_schema`, `json_object`, or `none`
when it named none), `usage` the answer's usage object as the server reported it (null when
absent), `error` the first 600 characters of a non-200 body, `content` the first and last 100
characters of the answer's text (to spot a model that loops). `client_gone` is true when the
client had closed its connection before the answer came (it timed out and gave up): the
server did the work, but the client never saw that answer or its usage.

    usage_proxy.py --upstream http://127.0.0.1:8080 --port 0 --log requests.jsonl

prints "usage_proxy listening on http://127.0.0.1:PORT" once it accepts connections.
Used by scripts/test-real-model.sh.
"""

import argparse
import http.client
import json
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; the proxy sets its own framing.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


class Recorder:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.count = 0

    def write(self, entry):
        with self.lock:
            self.count += 1
            entry = {"n": self.count, **entry}
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")


def response_format_type(body):
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "unparsable"
    if not isinstance(request, dict):
        return "unparsable"
    fmt = request.get("response_format")
    if fmt is None:
        return "none"
    if isinstance(fmt, dict):
        return str(fmt.get("type", "none"))
    return str(fmt)


def answer_fields(status, body):
    """usage, finish_reason, the text's ends and the error of an upstream answer."""
    usage = finish = content = error = None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if status == 200 and isinstance(answer, dict):
        usage = answer.get("usage")
        choices = answer.get("choices") or []
        if choices and isinstance(choices[0], dict):
            finish = choices[0].get("finish_reason")
            text = (choices[0].get("message") or {}).get("content") or ""
            content = text if len(text) <= 200 else f"{text[:100]} … {text[-100:]}"
    if status != 200:
        error = body[:600].decode("utf-8", "replace")
    return usage, finish, content, error


def client_gone(sock):
    """True when the client closed its connection (it sends nothing while it waits)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def make_handler(upstream, recorder, timeout):
    target = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

        def forward(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
                conn.request(method, self.path, body=body if method == "POST" else None, headers=headers)
                upstream_response = conn.getresponse()
                status = upstream_response.status
                reason = upstream_response.reason
                answer = upstream_response.read()
                answer_headers = [
                    (k, v) for k, v in upstream_response.getheaders() if k.lower() not in HOP_BY_HOP
                ]
                conn.close()
            except (OSError, http.client.HTTPException) as error:
                status, reason = 502, "Bad Gateway"
                answer = json.dumps({"error": {"message": f"usage_proxy: upstream failed: {error}"}}).encode()
                answer_headers = [("Content-Type", "application/json")]
            elapsed_ms = round((time.monotonic() - started) * 1000)
            entry = {
                "method": method,
                "path": self.path,
                "status": status,
                "ms": elapsed_ms,
                "client_gone": client_gone(self.connection),
            }
            if method == "POST":
                usage, finish, content, error = answer_fields(status, answer)
                entry.update(
                    response_format=response_format_type(body),
                    usage=usage,
                    finish_reason=finish,
                    content=content,
                    error=error,
                )
            recorder.write(entry)
            try:
                self.send_response(status, reason)
                for key, value in answer_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (logged as client_gone)

        def do_GET(self):  # noqa: N802 - http.server's naming
            self.forward("GET")

        def do_POST(self):  # noqa: N802
            self.forward("POST")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="base URL of the real server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log", required=True, help="JSON-lines file the requests are appended to")
    parser.add_argument("--timeout", type=float, default=600.0, help="upstream timeout, seconds")
    args = parser.parse_args()
    recorder = Recorder(args.log)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.upstream, recorder, args.timeout))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"usage_proxy listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
