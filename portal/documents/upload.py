"""A streaming multipart/form-data reader that never spools a file part.

Werkzeug's form parser buffers each file in a SpooledTemporaryFile that moves to TMPDIR
past 500 KiB: plaintext on disk, which would make crypto-shredding a fiction. Here the
body is read in chunks and each file part is handed out as an iterator of bytes, so the
caller can feed it straight into the encrypting writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from portal.documents.errors import MalformedUpload, UploadInterrupted

READ_SIZE = 1 << 20
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 200


@dataclass
class FieldPart:
    name: str
    value: str


@dataclass
class FilePart:
    name: str
    filename: str
    chunks: Iterator[bytes]


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise MalformedUpload("Le formulaire d'envoi n'est pas au format multipart/form-data.")
    return boundary.encode("latin-1")


class MultipartReader:
    """Iterate over the parts of a multipart body; a file part must be consumed before the next."""

    def __init__(self, stream: BinaryIO, boundary: bytes, read_size: int = READ_SIZE) -> None:
        self._stream = stream
        self._read_size = read_size
        self._decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self._eof = False
        self._pending_data = False

    def _next_event(self):
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as error:
                # The decoder raises ValueError when the body ended before the closing boundary.
                if self._eof:
                    raise UploadInterrupted("L'envoi a été interrompu avant la fin du fichier.") from error
                raise MalformedUpload("Le corps de la requête est mal formé.") from error
            if not isinstance(event, NeedData):
                return event
            if self._eof:
                raise UploadInterrupted("L'envoi a été interrompu avant la fin du fichier.")
            try:
                data = self._stream.read(self._read_size)
            except ClientDisconnected as error:
                raise UploadInterrupted("La connexion a été coupée pendant l'envoi.") from error
            except OSError as error:
                raise UploadInterrupted("La connexion a été coupée pendant l'envoi.") from error
            if data:
                self._decoder.receive_data(data)
            else:
                self._eof = True
                self._decoder.receive_data(None)

    def _data(self) -> Iterator[bytes]:
        self._pending_data = True
        while True:
            event = self._next_event()
            if not isinstance(event, Data):
                raise MalformedUpload("Le corps de la requête est mal formé.")
            if event.data:
                yield event.data
            if not event.more_data:
                self._pending_data = False
                return

    def parts(self) -> Iterator[FieldPart | FilePart]:
        """Yield fields (decoded, at most 64 KiB) and file parts (streamed) in body order."""
        current: Iterator[bytes] | None = None
        while True:
            if current is not None and self._pending_data:
                # The caller skipped a file part: drain it (bytes are discarded, never stored).
                for _ in current:
                    pass
            current = None
            event = self._next_event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, File):
                current = self._data()
                yield FilePart(event.name, event.filename or "", current)
            elif isinstance(event, Field):
                value = bytearray()
                for chunk in self._data():
                    value.extend(chunk)
                    if len(value) > MAX_FIELD_BYTES:
                        raise MalformedUpload("Un champ du formulaire est trop long.")
                yield FieldPart(event.name, value.decode("utf-8", "replace"))
            # Preamble events carry nothing we use.


# Room for the multipart headers and the text fields around a file part.
FORM_OVERHEAD = 1024 * 1024


def upload_reader(request: Any, max_file_bytes: int) -> MultipartReader:
    """A streaming reader of an upload body.

    Every other request is capped by the app-wide MAX_CONTENT_LENGTH (1 MiB); an upload may be
    as large as the upload limit plus its form. Set before ``request.stream`` is first read,
    which is when Werkzeug fixes the limit (beyond it: 413, early when Content-Length says so).
    """
    request.max_content_length = max_file_bytes + FORM_OVERHEAD
    return MultipartReader(request.stream, boundary_of(request.content_type))
