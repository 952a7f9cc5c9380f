"""HTTP/1.1 chunked transfer coding, decoded as bytes arrive: the load generators' one decoder
(bench/loadgen.py, bench/churn.py). Chunk extensions are skipped; the servers measured send no
trailers, so the body ends with the last chunk's size line and one CR LF."""

from __future__ import annotations


class Dechunker:
    __slots__ = ("_last", "_need", "_pending", "_skip", "ended")

    def __init__(self) -> None:
        self._need = 0  # bytes left in the current chunk
        self._skip = 0  # the CR LF after a chunk's data (or after the last chunk's size line)
        self._pending = b""  # an incomplete chunk-size line
        self._last = False  # the zero-size chunk's line arrived
        self.ended = False  # and its CR LF: the next bytes on the connection are a new response

    def feed(self, data: bytes) -> bytes:
        """The body bytes in ``data``; nothing after the end is taken."""
        out: list[bytes] = []
        if self._pending:
            data, self._pending = self._pending + data, b""
        i, size = 0, len(data)
        while i < size and not self.ended:
            if self._need:
                take = min(self._need, size - i)
                out.append(data[i : i + take])
                i += take
                self._need -= take
                if not self._need:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, size - i)
                i += take
                self._skip -= take
                if not self._skip and self._last:
                    self.ended = True
            else:
                j = data.find(b"\r\n", i)
                if j < 0:
                    self._pending = data[i:]
                    break
                n = int(data[i:j].split(b";", 1)[0], 16)
                i = j + 2
                if n == 0:
                    self._last = True
                    self._skip = 2  # the empty trailer's CR LF
                self._need = n
        return b"".join(out)
