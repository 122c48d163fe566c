#!/usr/bin/env python3
"""A loopback HTTP server of shard files with injected faults, for the streamed-shard tests
(tests/unit/test_streaming.cpp) and scripts/bench_stream.sh.

  shard_server.py ROOT PORT_FILE

Serves the files under ROOT on 127.0.0.1 at a free port, which it writes to PORT_FILE. The
first path segment picks the behaviour for the file named by the rest:
  /ok/F            the file
  /drop/N/F        announces the whole length, sends N bytes, closes the connection
  /status/C/F      answers HTTP status C
  /stall/N/F       sends N bytes, then nothing for 600 s
  /flaky/K/F       the first K requests for F as /drop/(half)/F, later ones whole
"""
import http.server
import os
import sys
import threading
import time

ROOT = sys.argv[1]
FLAKY = {}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_bytes(self, data, limit=None, stall=False):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/x-tar")
        self.end_headers()
        self.wfile.write(data if limit is None else data[:limit])
        self.wfile.flush()
        if stall:
            time.sleep(600)
        if limit is not None:
            self.close_connection = True

    def do_GET(self):
        parts = self.path.split("?")[0].lstrip("/").split("/")
        kind = parts[0]
        rest = parts[2:] if kind in ("drop", "status", "stall", "flaky") else parts[1:]
        path = os.path.join(ROOT, *rest)
        if kind == "status":
            self.send_error(int(parts[1]))
            return
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        if kind == "ok":
            self.send_bytes(data)
        elif kind == "drop":
            self.send_bytes(data, limit=int(parts[1]))
        elif kind == "stall":
            self.send_bytes(data, limit=int(parts[1]), stall=True)
        elif kind == "flaky":
            with LOCK:
                seen = FLAKY.get(path, 0)
                FLAKY[path] = seen + 1
            self.send_bytes(data, limit=len(data) // 2 if seen < int(parts[1]) else None)
        else:
            self.send_error(400)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, sys.argv[2])
    server.serve_forever()


if __name__ == "__main__":
    main()
