"""An OpenAI-compatible chat completions server on 127.0.0.1 that answers from a script,
in the wire format: streamed tool-call deltas (arguments split across chunks), parallel
tool calls, usage, and errors (429, 500, malformed tool-call arguments).

Each reply is picked by the number of assistant messages already in the conversation (as
the scripted models do), so retries and resumed threads get the same turn. Every tool the
client sends is checked against OpenAI's strict function-calling rules, as OpenAI would
(a violation is a 400), and every request is kept for the test to read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from closeguard.agent.models import strict_violations


def tool_call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "arguments": json.dumps(args)}


@dataclass
class WireScript:
    """Replies in order: ``{"text", "tool_calls": [{"name", "arguments"}], "usage"}`` or
    ``{"status": 429, "message": ...}``."""

    turns: list[dict[str, Any]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def reply_for(self, body: dict[str, Any]) -> dict[str, Any]:
        index = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        if index >= len(self.turns):
            return {"text": f"(the wire script has no turn {index + 1})"}
        return self.turns[index]


def _completion(turn: dict[str, Any], model: str) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for i, c in enumerate(turn.get("tool_calls") or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": turn.get("text") or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-wire",
        "object": "chat.completion",
        "created": 1768478400,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": _usage(turn),
    }


def _usage(turn: dict[str, Any]) -> dict[str, int]:
    usage = turn.get("usage") or {"input_tokens": 0, "output_tokens": 0}
    inp, out = int(usage["input_tokens"]), int(usage["output_tokens"])
    return {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}


def _chunks(turn: dict[str, Any], model: str, with_usage: bool) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-wire",
            "object": "chat.completion.chunk",
            "created": 1768478400,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    text = turn.get("text") or ""
    for start in range(0, len(text), 7):
        yield chunk({"content": text[start : start + 7]})
    calls = turn.get("tool_calls") or []
    for i, c in enumerate(calls):
        head = {"index": i, "id": f"call_{i}", "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": c["name"], "arguments": ""}}]})
    # the arguments arrive in pieces, the parallel calls' pieces interleaved
    pieces = [[c["arguments"][j : j + 5] for j in range(0, len(c["arguments"]), 5)] for c in calls]
    for step in range(max((len(p) for p in pieces), default=0)):
        for i, parts in enumerate(pieces):
            if step < len(parts):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": parts[step]}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    if with_usage:
        yield {
            "id": "chatcmpl-wire",
            "object": "chat.completion.chunk",
            "created": 1768478400,
            "model": model,
            "choices": [],
            "usage": _usage(turn),
        }


def _handler(script: WireScript) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, data: Any) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.send_header("retry-after-ms", "1")
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            script.requests.append(body)
            if not self.path.endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            for tool in body.get("tools") or []:
                fn = tool.get("function") or {}
                found = (
                    strict_violations(fn.get("parameters") or {})
                    if fn.get("strict")
                    else ["not strict"]
                )
                if found:
                    script.violations.extend(f"{fn.get('name')}: {v}" for v in found)
            if script.violations:
                message = f"Invalid schema for function: {script.violations[0]}"
                self._json(400, {"error": {"message": message, "type": "invalid_request_error"}})
                return
            turn = script.reply_for(body)
            if "status" in turn:
                message = turn.get("message", "error")
                self._json(turn["status"], {"error": {"message": message, "type": "wire"}})
                return
            model = str(body.get("model"))
            if not body.get("stream"):
                self._json(200, _completion(turn, model))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            for piece in _chunks(turn, model, usage):
                self.wfile.write(f"data: {json.dumps(piece)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


@contextmanager
def wire_server(script: WireScript) -> Iterator[str]:
    """Serve ``script`` on 127.0.0.1; yields the base URL (``http://127.0.0.1:N/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
