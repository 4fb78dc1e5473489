"""A small HTTP forward proxy for apt in the lab's namespaces, which have no route out.

It serves GET of absolute ``http://`` URLs (what apt sends through ``http_proxy``) from
the host's side of the lab bridge. Package files (``.deb``) are cached by URL in a
directory, so that the nodes download each package once (and later runs none); index
files (Release, Packages, ...) always go upstream, so the nodes see the mirror as it is.
Nothing but GET and HEAD, nothing but http: no CONNECT tunnel out of the lab.
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Headers of the response passed on to apt (apt needs the length; the rest is noise).
PASSED = ("Content-Type", "Last-Modified", "ETag", "Content-Length")
#: Headers of apt's request passed upstream (conditional requests for the indexes).
FORWARDED = ("If-Modified-Since", "If-None-Match", "Range", "If-Range", "User-Agent")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines its requests
    server: ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(body=False)

    def do_GET(self, body: bool = True) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.netloc:
            self.answer(400, b"absolute http URLs only\n")
            return
        if url.path.endswith(".deb") and self.command == "GET":
            path = self.server.cached(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.debian.binary-package")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with path.open("rb") as data:
                shutil.copyfileobj(data, self.wfile)
            return
        headers = {k: v for k in FORWARDED if (v := self.headers.get(k))}
        request = urllib.request.Request(self.path, headers=headers, method=self.command)
        try:
            with self.server.opener.open(request, timeout=120) as response:
                status, got, content = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, got, content = error.code, error.headers, error.read()
        except OSError as error:
            self.answer(502, f"{error}\n".encode())
            return
        self.send_response(status)
        for name in PASSED[:-1]:
            if got.get(name):
                self.send_header(name, got[name])
        self.send_header("Content-Length", str(len(content) if body else
                                               got.get("Content-Length", "0")))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def answer(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


class ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], cache: Path) -> None:
        super().__init__(address, Handler)
        self.cache = cache
        self.cache.mkdir(parents=True, exist_ok=True)
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        # Upstream as the host reaches it (its own proxy settings, if any).
        self.opener = urllib.request.build_opener()
        self.fetched = 0
        self.hits = 0

    def cached(self, url: str) -> Path:
        """The package at ``url``, downloaded once whoever asks for it meanwhile."""
        name = Path(urllib.parse.urlsplit(url).path).name
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        path = self.cache / f"{key}-{name}"
        with self.guard:
            lock = self.locks.setdefault(url, threading.Lock())
        with lock:
            if path.exists():
                self.hits += 1
                return path
            partial = path.with_suffix(".partial")
            with self.opener.open(url, timeout=300) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
            partial.rename(path)
            self.fetched += 1
            return path


@contextmanager
def apt_proxy(address: str, cache: Path) -> Iterator[ProxyServer]:
    """The proxy on ``address`` (a free port), serving until the block ends."""
    server = ProxyServer((address, 0), cache)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
