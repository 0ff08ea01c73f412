"""A streaming multipart/form-data reader that never spools a file part.

Werkzeug's form parser buffers each file in a SpooledTemporaryFile that moves to TMPDIR
past 500 KiB: plaintext on disk, which would make crypto-shredding a fiction. Here the
body is read in large chunks and each file part is handed out as an iterator of chunks, so
the caller can feed it straight into the encrypting writer.

Werkzeug's sansio ``MultipartDecoder`` would stream too, but it copies every byte two or
three times through its bytearray buffer and runs a regular expression per read: on the
upload path it cost about as much CPU as SHA-256. This reader ``readinto``s 1 MiB at a time into a
small pool of buffers, scans with ``bytes.find`` and hands out read-only ``memoryview``
slices. The encrypting threads work on a chunk after the parser has moved on, so a buffer
is reused only once no view of it is left (see ``_unshared``).

Line breaks must be CRLF (RFC 2046 / RFC 7578, which every browser and HTTP library
follows): a lone LF before ``--boundary`` is file content, not a delimiter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from flask_babel import gettext as _
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header

from portal.documents.errors import MalformedUpload, UploadInterrupted

READ_SIZE = 1 << 20
# Reads of a body known to be smaller than READ_SIZE are sized to it, but never below this.
MIN_READ_SIZE = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 200
# The headers of one part (Content-Disposition with a long RFC 5987 filename, Content-Type).
MAX_HEADER_BYTES = 16 * 1024
# Transport padding allowed after a boundary (RFC 2046 LWSP) before its CRLF.
MAX_PADDING = 256

_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"

Chunk = bytes | memoryview


@dataclass
class FieldPart:
    name: str
    value: str


@dataclass
class FilePart:
    """A file part: ``chunks`` yields bytes-like chunks (bytes or read-only memoryviews) that
    are never modified afterwards; ``content_type`` is what the client declared, unverified."""

    name: str
    filename: str
    chunks: Iterator[Chunk]
    content_type: str = ""


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise MalformedUpload(_("Le formulaire d'envoi n'est pas au format multipart/form-data."))
    return boundary.encode("latin-1")


def _malformed() -> MalformedUpload:
    return MalformedUpload(_("Le corps de la requête est mal formé."))


def _interrupted() -> UploadInterrupted:
    return UploadInterrupted(_("L'envoi a été interrompu avant la fin du fichier."))


def _parse_headers(block: bytes) -> dict[str, str]:
    """Header lines (CRLF-separated, folded lines joined) to a dict keyed by lower-case name."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed() from None
    headers: dict[str, str] = {}
    last: str | None = None
    for line in text.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t":
            # Obsolete folding (RFC 5322): a continuation of the previous header's value.
            if last is None:
                raise _malformed()
            headers[last] = (headers[last] + " " + line.strip(" \t")).strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip(" \t").lower()
        if not colon or not name:
            raise _malformed()
        headers[name] = value.strip(" \t")
        last = name
    return headers


def _unshared(buffer: bytearray) -> bool:
    """True when no memoryview of ``buffer`` is alive: a bytearray with exports cannot be
    resized, so a resize that succeeds proves no chunk handed out still points into it."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    del buffer[-1]
    return True


class _BufferPool:
    """Read buffers, reused only once every chunk cut from them has been dropped.

    A fresh 1 MiB allocation per read costs a page fault per 4 KiB page (the kernel zeroes
    each one): measured on the bench machine, that was more CPU than the parser itself. Reusing buffers that
    are already mapped removes it, and reuse waits until the consumer (the encrypting
    thread) has let go of every view, so a chunk is never overwritten under it.
    """

    MAX_POOLED = 8

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffers: list[bytearray] = []

    def take(self, busy: bytearray) -> bytearray:
        for buffer in self._buffers:
            if buffer is not busy and _unshared(buffer):
                return buffer
        buffer = bytearray(self._size)
        if len(self._buffers) < self.MAX_POOLED:
            self._buffers.append(buffer)
        return buffer


class MultipartReader:
    """Iterate over the parts of a multipart body; a file part must be consumed before the next."""

    def __init__(self, stream: BinaryIO, boundary: bytes, read_size: int = READ_SIZE) -> None:
        self._stream = stream
        self._read_size = read_size
        self._delimiter = b"\r\n--" + boundary
        # What a read may have to keep in front of it: an unfinished header block, or a
        # delimiter with its padding.
        self._pool = _BufferPool(read_size + MAX_HEADER_BYTES + len(self._delimiter) + MAX_PADDING + 8)
        # The body may open with "--boundary" without a line break before it: a virtual CRLF
        # in front lets the same delimiter search find the first boundary too.
        self._buf = bytearray(_CRLF)
        self._end = len(_CRLF)  # bytes of _buf that hold data
        self._pos = 0
        self._eof = False
        self._parts = 0
        self._done = False
        self._pending_open = False

    # ------------------------------------------------------------------ reading

    def _read_into(self, target: memoryview) -> int:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return readinto(target) or 0
        data = self._stream.read(len(target))
        target[: len(data)] = data
        return len(data)

    def _fill(self) -> bool:
        """Read more of the body after what is left unconsumed; False at the end of the body."""
        if self._eof:
            return False
        rest = self._end - self._pos
        buffer = self._pool.take(busy=self._buf)
        # Usually nothing, or a few held-back bytes (a possible partial delimiter), is left.
        buffer[:rest] = memoryview(self._buf)[self._pos : self._end]
        try:
            with memoryview(buffer) as view:
                count = self._read_into(view[rest : rest + self._read_size])
        except (ClientDisconnected, OSError) as error:
            raise UploadInterrupted(_("La connexion a été coupée pendant l'envoi.")) from error
        if not count:
            self._eof = True
            return False
        self._buf, self._end, self._pos = buffer, rest + count, 0
        return True

    def _chunk(self, end: int) -> memoryview:
        """Hand out [pos, end) without a copy (read-only: the consumer must not write to it)."""
        return memoryview(self._buf)[self._pos : end].toreadonly()

    def _after_delimiter(self, at: int) -> tuple[str, int]:
        """What follows a delimiter found at ``at``: ("close", end), ("part", end), ("data", 0)
        when it is content that merely starts like a delimiter, or ("more", 0)."""
        buf, size = self._buf, self._end
        index = at + len(self._delimiter)
        if size - index < 2:
            return ("more", 0)
        if buf[index : index + 2] == b"--":
            return ("close", index + 2)
        end = index
        while end < size and buf[end] in (0x20, 0x09):
            end += 1
            if end - index > MAX_PADDING:
                raise _malformed()
        if size - end < 2:
            return ("more", 0)
        if buf[end : end + 2] == _CRLF:
            return ("part", end + 2)
        return ("data", 0)

    def _scan(self) -> Iterator[Chunk]:
        """Yield the content up to the next real delimiter and consume the delimiter line.

        Sets ``self._done`` when it was the closing delimiter. Raises UploadInterrupted when
        the body ends first.
        """
        delimiter = self._delimiter
        search_from = self._pos
        while True:
            buf, size = self._buf, self._end
            found = buf.find(delimiter, search_from, size)
            if found >= 0:
                kind, end = self._after_delimiter(found)
                if kind == "data":
                    search_from = found + 1
                    continue
                if kind == "more":
                    if found > self._pos:
                        chunk, self._pos = self._chunk(found), found
                        yield chunk
                    if not self._fill():
                        raise _interrupted()
                    search_from = self._pos
                    continue
                if found > self._pos:
                    chunk = self._chunk(found)
                    self._pos, self._done = end, kind == "close"
                    yield chunk
                else:
                    self._pos, self._done = end, kind == "close"
                return
            # No delimiter: everything is content except a tail that could begin one.
            safe = size
            candidate = buf.find(b"\r", max(search_from, size - len(delimiter) + 1), size)
            while candidate >= 0:
                if delimiter.startswith(buf[candidate:size]):
                    safe = candidate
                    break
                candidate = buf.find(b"\r", candidate + 1, size)
            if safe > self._pos:
                chunk, self._pos = self._chunk(safe), safe
                yield chunk
            if not self._fill():
                raise _interrupted()
            search_from = self._pos

    def _headers(self) -> dict[str, str]:
        # The delimiter line's CRLF is consumed: an empty header block is a bare CRLF here.
        while True:
            buf = self._buf
            if buf.startswith(_CRLF, self._pos, self._end):
                end = self._pos
            else:
                end = buf.find(_HEADERS_END, self._pos, min(self._end, self._pos + MAX_HEADER_BYTES + 4))
                if end >= 0:
                    end += 2
            if end >= 0:
                block = buf[self._pos : end]
                self._pos = end + 2
                return _parse_headers(block)
            if self._end - self._pos > MAX_HEADER_BYTES:
                raise MalformedUpload(_("Les en-têtes d'une partie du formulaire sont trop longs."))
            if not self._fill():
                raise _interrupted()

    def _drain_epilogue(self) -> None:
        # Read what follows the closing delimiter, so the whole body has been received (and
        # an interrupted body is noticed) before the caller commits anything.
        self._pos = self._end
        while self._fill():
            self._pos = self._end

    # ------------------------------------------------------------------ parts

    def _file_data(self) -> Iterator[Chunk]:
        yield from self._scan()
        self._pending_open = False

    def _skip_rest(self, chunks: Iterator[Chunk]) -> None:
        """Discard what the caller left of a file part, so the next part can be parsed."""
        if not self._pending_open:
            return
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        # Resuming a scan from the current position never hands these bytes to anyone.
        for _skipped in self._scan():
            pass
        self._pending_open = False

    def parts(self) -> Iterator[FieldPart | FilePart]:
        """Yield fields (decoded, at most 64 KiB) and file parts (streamed) in body order."""
        # The preamble is discarded: scan up to the first boundary.
        for _skipped in self._scan():
            pass
        while not self._done:
            headers = self._headers()
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise RequestEntityTooLarge()
            disposition = headers.get("content-disposition")
            if disposition is None:
                raise _malformed()
            _disposition_type, options = parse_options_header(disposition)
            name = options.get("name") or ""
            filename = options.get("filename")
            if filename is not None:
                self._pending_open = True
                chunks = self._file_data()
                yield FilePart(name, filename, chunks, headers.get("content-type", ""))
                self._skip_rest(chunks)
            else:
                value = bytearray()
                for chunk in self._scan():
                    value += chunk
                    if len(value) > MAX_FIELD_BYTES:
                        raise MalformedUpload(_("Un champ du formulaire est trop long."))
                yield FieldPart(name, value.decode("utf-8", "replace"))
        self._drain_epilogue()


# Room for the multipart headers and the text fields around a file part.
FORM_OVERHEAD = 1024 * 1024


def upload_reader(request: Any, max_file_bytes: int) -> MultipartReader:
    """A streaming reader of an upload body.

    Every other request is capped by the app-wide MAX_CONTENT_LENGTH (1 MiB); an upload may be
    as large as the upload limit plus its form. Set before ``request.stream`` is first read,
    which is when Werkzeug fixes the limit (beyond it: 413, early when Content-Length says so).
    """
    request.max_content_length = max_file_bytes + FORM_OVERHEAD
    # A small body gets small read buffers: two fresh 1 MiB ones, zeroed page by page, cost an
    # 8 KiB upload more than parsing it.
    length = request.content_length
    read_size = READ_SIZE if length is None else max(MIN_READ_SIZE, min(READ_SIZE, length))
    return MultipartReader(request.stream, boundary_of(request.content_type), read_size)
