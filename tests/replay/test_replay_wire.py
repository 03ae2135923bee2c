"""The bytes a replay response puts on the wire: HTTP/1.1 chunked framing a strict reader accepts,
two responses back to back on one kept-alive connection, and the body equal to the lines a client
library reads. The server hands each chunk's size line, data and CRLF to ``writelines`` instead of
joining them (``server.body_writes_without_join``), so the framing is checked byte by byte here."""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse

import pytest
from replay_helpers import ServerProc, get_lines

from ticktape.replay.server import body_writes_without_join

RAW = {"exchange": "binance-futures", "from": "2021-07-22T22:00:00Z", "to": "2021-07-22T23:00:00Z",
       "filters": [{"channel": "depth", "symbols": ["SUSHIUSDT", "AKROUSDT"]}], "withDisconnects": True}


class Wire:
    """A strict HTTP/1.1 reader on one socket (no client library between the server and the test)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 30)
        self.buf = b""

    def _fill(self) -> None:
        got = self.sock.recv(1 << 20)
        assert got, "server closed the connection mid-response"
        self.buf += got

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get(self, target: str) -> tuple[dict[str, str], bytes, int]:
        """One request; the headers, the de-chunked body and how many chunks carried it."""
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = self.line()
        assert status.startswith(b"HTTP/1.1 200"), status
        headers = {}
        while h := self.line():
            k, v = h.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        assert headers.get("transfer-encoding") == "chunked", headers
        assert "content-length" not in headers
        body, chunks = bytearray(), 0
        while True:
            size_line = self.line()
            assert size_line and all(c in b"0123456789abcdefABCDEF" for c in size_line), size_line
            size = int(size_line, 16)
            if size == 0:
                assert self.line() == b"", "no trailers expected after the last chunk"
                return headers, bytes(body), chunks
            body += self.exactly(size)
            assert self.exactly(2) == b"\r\n", "chunk data not followed by CRLF"
            chunks += 1

    def close(self) -> None:
        self.sock.close()


def test_join_is_skipped_where_writelines_is_sound() -> None:
    v = sys.version_info
    flawed = (3, 12, 0) <= v < (3, 12, 9) or (3, 13, 0) <= v < (3, 13, 2)
    assert body_writes_without_join() is (not flawed)


def test_the_servers_runner_turns_the_join_off() -> None:
    """``make_runner`` (what ``capture replay serve`` builds its sites with) is what turns it off."""
    from aiohttp import http_writer, web

    from ticktape.replay.server import make_runner

    before = http_writer.SKIP_WRITELINES
    http_writer.SKIP_WRITELINES = True
    try:
        make_runner(web.Application())
        v = sys.version_info
        assert http_writer.SKIP_WRITELINES is ((3, 12, 0) <= v < (3, 12, 9) or (3, 13, 0) <= v < (3, 13, 2))
    finally:
        http_writer.SKIP_WRITELINES = before


@pytest.mark.slow
def test_raw_replay_is_strictly_chunked_and_keeps_the_connection(server: ServerProc) -> None:
    want = b"".join(get_lines(server.url("replay", RAW)))
    assert want.count(b"\n") > 100
    target = "/replay?options=" + urllib.parse.quote(json.dumps(RAW))
    wire = Wire(server.port)
    try:
        for _ in range(2):  # the second response on the same connection: the first one ended exactly
            headers, body, chunks = wire.get(target)
            assert headers["content-type"].startswith("application/x-json-stream")
            assert body == want
            assert chunks >= 2, chunks  # the hour goes out in several chunks: each one framed
        assert wire.buf == b"", "bytes after the last chunk"
    finally:
        wire.close()
