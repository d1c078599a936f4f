#!/usr/bin/env python3
"""A small OpenAI-compatible model provider for the spend e2e: real runs through the real gateway
produce real usage and, with the per-token price in the gateway's config, real cost.

    python3 fake-llm.py PORT [PROMPT_TOKENS] [COMPLETION_TOKENS]

Every answer of POST /v1/chat/completions reports PROMPT_TOKENS (default 1000) input and
COMPLETION_TOKENS (default 500) output tokens, streamed (with `stream_options.include_usage`, the
usage chunk the gateway reads) or not. GET /v1/models lists the one model `m1`. Each request is
counted; GET /stats answers {"completions": N, "cut": N}.

A streamed request whose messages contain SLOWRUN sends its first chunk, then keeps the stream
open (an SSE comment every 0.2 s) for up to 120 s before it finishes: a run in flight for the
abort test. A stream the gateway closes early is counted as cut.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
PROMPT = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
COMPLETION = int(sys.argv[3]) if len(sys.argv) > 3 else 500
STATS = {"completions": 0, "cut": 0}
SLOW_SECONDS = 120
USAGE = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.answer(200, {"object": "list", "data": [{"id": "m1", "object": "model", "owned_by": "test"}]})
        elif self.path == "/stats":
            self.answer(200, STATS)
        else:
            self.answer(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as err:
            self.answer(400, {"error": {"message": f"bad JSON: {err}"}})
            return
        if not self.path.endswith("/chat/completions"):
            self.answer(404, {"error": {"message": f"no route {self.path}"}})
            return
        STATS["completions"] += 1
        created = int(time.time())
        text = "All done."
        if not request.get("stream"):
            self.answer(200, {
                "id": "cmpl-1", "object": "chat.completion", "created": created, "model": "m1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": USAGE,
            })
            return
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": USAGE},
        ]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        slow = "SLOWRUN" in json.dumps(request.get("messages"))
        self.close_connection = True
        try:
            for i, chunk in enumerate(chunks):
                chunk.update({"id": "cmpl-1", "object": "chat.completion.chunk", "created": created, "model": "m1"})
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if slow and i == 0:
                    deadline = time.monotonic() + SLOW_SECONDS
                    while time.monotonic() < deadline:
                        time.sleep(0.2)
                        self.wfile.write(b": still thinking\n\n")
                        self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            STATS["cut"] += 1


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
