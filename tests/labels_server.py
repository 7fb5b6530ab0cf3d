"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests and the
benchmark. The URL path picks the behaviour: /good/v1 (text answers only, as a
server without log-probabilities), /logprobs/v1 (also `top_logprobs` when asked),
/junk/v1, /slow/v1, /flaky/v1 (two 500s per prompt, then good), /bad400/v1,
/notjson/v1; /delay/v1 answers well after `delay_s` seconds (the benchmark).

A good server labels a feature "mentions of <its first listed token>"
and answers a yes/no question "Yes" when a word of the description's last word
is in the text (P(yes) 0.9 against 0.2 with log-probabilities)."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fits(prompt: str) -> bool:
    """Whether the description's last word occurs in the question's text."""
    label = re.search(r"^Description: (.*)$", prompt, flags=re.M).group(1)
    text = re.search(r"^Text[^:]*: (.*)$", prompt, flags=re.M).group(1)
    return label.split()[-1].lower() in text.lower()


def good_answer(prompt: str) -> str:
    if "Answer Yes or No" in prompt:
        return "Yes" if fits(prompt) else "No"
    tokens = re.search(r"^Words: ([^,\s]+)", prompt, flags=re.M)
    return f"Label: mentions of {tokens.group(1) if tokens else 'nothing'}"


def top_logprobs(prompt: str) -> list[dict]:
    p_yes = 0.9 if fits(prompt) else 0.2
    return [
        {"token": "Yes", "logprob": math.log(p_yes * 0.8)},
        {"token": " no", "logprob": math.log((1 - p_yes) * 0.8)},
        {"token": "Maybe", "logprob": math.log(0.2)},
    ]


class ChatServer:
    """Start with `with ChatServer() as s:`; `s.url(mode)` is a base_url."""

    def __init__(self, delay_s: float = 0.0, slow_s: float = 2.0) -> None:
        self.delay_s, self.slow_s = delay_s, slow_s
        self.requests: Counter[str] = Counter()  # (mode, prompt) -> count
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = self.path.strip("/").split("/")[0]
                prompt = body["messages"][-1]["content"]
                with server.lock:
                    server.requests[(mode, prompt)] += 1
                    n = server.requests[(mode, prompt)]
                    server.headers.append(dict(self.headers))
                server.respond(self, mode, prompt, n, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{mode}/v1"

    def respond(self, h, mode: str, prompt: str, n: int, body: dict) -> None:
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "delay":
            time.sleep(self.delay_s)
        if mode == "flaky" and n <= 2:
            return self._send(h, 500, b'{"error": "overloaded"}')
        if mode == "bad400":
            return self._send(h, 400, b'{"error": "bad request"}')
        if mode == "notjson":
            return self._send(h, 200, b"<html>proxy error</html>")
        text = "I am sorry, I cannot help." if mode == "junk" else good_answer(prompt)
        choice = {"message": {"role": "assistant", "content": text}}
        if mode == "logprobs" and body.get("logprobs"):
            choice["logprobs"] = {
                "content": [{"token": text, "top_logprobs": top_logprobs(prompt)}]
            }
        reply = {
            "choices": [choice],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 7},
            "model": body["model"],
        }
        return self._send(h, 200, json.dumps(reply).encode())

    @staticmethod
    def _send(h, code: int, data: bytes) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
