"""A local HTTP server that speaks Ollama's chat protocol (``POST /api/chat``,
non-streamed), records what it was asked, and can fail on demand."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

OK = "ok"
ERROR = "error"  # 500 with Ollama's error body
HANG = "hang"  # accepts, then answers nothing until released
GARBAGE = "garbage"  # 200 with a body that is not JSON
NOT_HTTP = "not http"  # answers with bytes that are not HTTP (another program on Ollama's port)
HUGE = "huge"  # 200 with a JSON body over a megabyte
NO_CONTENT = "no content"  # 200 with Ollama's JSON, but no message content in it


class FakeOllama:
    def __init__(self, content: str = "The payment failed for lack of funds."):
        self.content = content
        self.mode = OK
        self.requests: list[dict] = []
        self.release = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/api/chat":
                    self._answer(404, {"error": "404 page not found"})
                    return
                fake.requests.append(json.loads(body))
                if fake.mode == HANG:
                    fake.release.wait(10)
                    return
                if fake.mode == ERROR:
                    self._answer(500, {"error": "llama runner process has terminated"})
                    return
                if fake.mode == GARBAGE:
                    self._answer(200, None, raw=b"<html>not ollama</html>")
                    return
                if fake.mode == NOT_HTTP:
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
                    self.close_connection = True
                    return
                if fake.mode == HUGE:
                    self._answer(200, {"message": {"role": "assistant", "content": "x" * (1024 * 1024)}})
                    return
                if fake.mode == NO_CONTENT:
                    self._answer(200, {"model": "m", "message": {"role": "assistant", "content": "  \n"}, "done": True})
                    return
                request = fake.requests[-1]
                self._answer(
                    200,
                    {
                        "model": request.get("model"),
                        "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                        "message": {"role": "assistant", "content": fake.content},
                        "done_reason": "stop",
                        "done": True,
                        "total_duration": 1234567,
                        "eval_count": 12,
                    },
                )

            def _answer(self, status, document, raw=None):
                payload = raw if raw is not None else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-ollama", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeOllama:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
