"""The streaming multipart reader: delimiters across reads, hostile bodies, limits, and a
differential fuzz against Werkzeug's parser."""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from portal.documents.errors import MalformedUpload, UploadInterrupted
from portal.documents.upload import (
    MAX_FIELD_BYTES,
    MAX_HEADER_BYTES,
    MAX_PARTS,
    FilePart,
    MultipartReader,
    boundary_of,
)

BOUNDARY = b"b0und-ary"


class Pieces(io.RawIOBase):
    """A body delivered in fixed pieces, whatever size is asked: a socket's reads."""

    def __init__(self, body: bytes, cuts: list[int] | None = None) -> None:
        self._body = body
        self._cuts = [*sorted({c for c in cuts or [] if 0 < c < len(body)}), len(body)]
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        while self._cuts and self._cuts[0] <= self._at:
            self._cuts.pop(0)
        if not self._cuts:
            return b""
        end = min(self._cuts[0], self._at + size) if size > 0 else self._cuts[0]
        data = self._body[self._at : end]
        self._at = end
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ReadOnly:
    """A stream with ``read`` only (no ``readinto``)."""

    def __init__(self, body: bytes, step: int) -> None:
        self._body, self._step, self._at = body, step, 0

    def read(self, size: int) -> bytes:
        data = self._body[self._at : self._at + min(size, self._step)]
        self._at += len(data)
        return data


def part(name: str, value: bytes, filename: str | None = None, extra: bytes = b"") -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return b"--" + BOUNDARY + b"\r\n" + disposition.encode() + b"\r\n" + extra + b"\r\n" + value + b"\r\n"


def body_of(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(parts) + b"--" + BOUNDARY + b"--" + epilogue


def parse(body: bytes, cuts: list[int] | None = None, read_size: int = 1 << 20, boundary: bytes = BOUNDARY):
    """Every part as (kind, name, filename, content) with the file content fully read."""
    out = []
    for item in MultipartReader(Pieces(body, cuts), boundary, read_size).parts():
        if isinstance(item, FilePart):
            out.append(("file", item.name, item.filename, b"".join(bytes(c) for c in item.chunks)))
        else:
            out.append(("field", item.name, None, item.value.encode()))
    return out


FILE_CONTENT = b"\r\n-\r\n--b0und\r\n--b0und-arx\r\n--b0und-ary" + b"X" * 7 + b"\r\r\n\n--"
SAMPLE = body_of(
    part("csrf_token", b"jeton"),
    part("file", FILE_CONTENT, "a.bin", b"Content-Type: application/octet-stream\r\n"),
    part("comment", b"fin"),
    preamble=b"ignored preamble\r\n",
    epilogue=b"\r\nignored epilogue",
)
EXPECTED = [
    ("field", "csrf_token", None, b"jeton"),
    ("file", "file", "a.bin", FILE_CONTENT),
    ("field", "comment", None, b"fin"),
]


def test_sample_parses():
    assert parse(SAMPLE) == EXPECTED


@pytest.mark.parametrize("read_size", [1, 2, 3, 5, 7, 11, 13, 64])
def test_any_read_size(read_size):
    assert parse(SAMPLE, read_size=read_size) == EXPECTED


def test_delimiter_straddling_every_position_of_a_read():
    for cut in range(1, len(SAMPLE)):
        assert parse(SAMPLE, cuts=[cut]) == EXPECTED, cut
    for cut in range(1, len(SAMPLE) - 1):
        assert parse(SAMPLE, cuts=[cut, cut + 1]) == EXPECTED, cut


def test_stream_without_readinto():
    parts = MultipartReader(ReadOnly(SAMPLE, 5), BOUNDARY, 7).parts()
    got = [(p.name, b"".join(p.chunks)) if isinstance(p, FilePart) else (p.name, p.value) for p in parts]
    assert got == [("csrf_token", "jeton"), ("file", FILE_CONTENT), ("comment", "fin")]


def test_large_file_across_many_reads_is_returned_whole():
    content = os.urandom(3 << 20) + b"\r\n--" + BOUNDARY[:-1] + os.urandom(1000)
    body = body_of(part("file", content, "big.bin"))
    cuts = list(range(1000, len(body), 65_521))
    assert parse(body, cuts=cuts, read_size=1 << 20) == [("file", "file", "big.bin", content)]


def test_chunks_stay_valid_after_the_parser_moves_on():
    # The encrypting thread works on a chunk after the parser has read further: a chunk
    # handed out must never be overwritten by a later read.
    content = bytes(range(256)) * 20_000
    body = body_of(part("file", content, "f.bin"))
    kept = []
    for item in MultipartReader(Pieces(body, list(range(7, len(body), 4099))), BOUNDARY, 8192).parts():
        if isinstance(item, FilePart):
            kept.extend(item.chunks)  # no copy
    assert len(kept) > 100
    assert b"".join(kept) == content
    assert all(chunk.readonly for chunk in kept)


def test_read_buffers_are_reused_once_released():
    # Chunks dropped at once: the reader cycles through a couple of buffers instead of
    # allocating one per read.
    content = os.urandom(200_000)
    body = body_of(part("file", content, "f.bin"))
    reader = MultipartReader(Pieces(body), BOUNDARY, 4096)
    seen = set()
    total = bytearray()
    for item in reader.parts():
        for chunk in item.chunks:
            seen.add(id(chunk.obj))
            total += chunk
            del chunk
    assert bytes(total) == content
    assert len(seen) <= 3


def test_empty_file_and_empty_field():
    body = body_of(part("file", b"", "vide.txt"), part("note", b""))
    assert parse(body) == [("file", "file", "vide.txt", b""), ("field", "note", None, b"")]


def test_body_may_start_with_the_boundary_or_a_preamble():
    assert parse(body_of(part("a", b"1"))) == [("field", "a", None, b"1")]
    assert parse(body_of(part("a", b"1"), preamble=b"--b0und-ar\r\n\r\n")) == [("field", "a", None, b"1")]


def test_lone_lf_or_missing_crlf_before_the_boundary_is_content():
    content = b"x--" + BOUNDARY + b"\r\ny\n--" + BOUNDARY + b"\r\nz\r--" + BOUNDARY + b"--"
    assert parse(body_of(part("file", content, "f"))) == [("file", "file", "f", content)]


def test_transport_padding_after_a_boundary():
    body = (
        b"--" + BOUNDARY + b" \t \r\n" + b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n--' + BOUNDARY + b"--"
    )
    assert parse(body) == [("field", "a", None, b"1")]


def test_crlf_heavy_binary_content():
    rng = random.Random(5)
    alphabet = [b"\r", b"\n", b"\r\n", b"-", b"--", b"b0und", b"\r\n--b0und-ar", b"\x00", b"\xff"]
    content = b"".join(rng.choice(alphabet) for _ in range(20_000))
    body = body_of(part("file", content, "crlf.bin"), part("after", b"ok"))
    expected = [("file", "file", "crlf.bin", content), ("field", "after", None, b"ok")]
    for read_size in (3, 17, 1000, 1 << 20):
        assert parse(body, read_size=read_size) == expected


def test_header_folding_case_and_content_type():
    body = (
        b"--" + BOUNDARY + b"\r\n"
        b"CONTENT-disposition: form-data;\r\n"
        b'\tname="doc";\r\n'
        b'  filename="rapport.pdf"\r\n'
        b"content-TYPE: application/pdf\r\n\r\n"
        b"%PDF\r\n--" + BOUNDARY + b"--\r\n"
    )
    parts = MultipartReader(Pieces(body), BOUNDARY).parts()
    item = next(parts)
    assert isinstance(item, FilePart)
    assert (item.name, item.filename, item.content_type) == ("doc", "rapport.pdf", "application/pdf")
    assert b"".join(item.chunks) == b"%PDF"
    assert list(parts) == []


def test_non_ascii_filenames():
    raw = body_of(part("file", b"1", "Procès-verbal été.pdf"))
    assert parse(raw)[0][2] == "Procès-verbal été.pdf"
    extended = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="fallback.pdf"; '
        b"filename*=UTF-8''Proc%C3%A8s%20%E2%82%AC.pdf\r\n\r\n1\r\n--" + BOUNDARY + b"--"
    )
    assert parse(extended)[0][2] == "Procès €.pdf"


def test_quoted_names_with_escaped_quotes():
    body = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="a\\"b"; filename="dit \\"oui\\".txt"\r\n\r\n'
        b"1\r\n--" + BOUNDARY + b"--"
    )
    assert parse(body) == [("file", 'a"b', 'dit "oui".txt', b"1")]


def test_skipped_or_half_read_file_part_does_not_break_the_next_part():
    body = body_of(part("f1", os.urandom(50_000), "a"), part("f2", b"deux", "b"), part("x", b"y"))
    reader = MultipartReader(Pieces(body), BOUNDARY, 4096).parts()
    first = next(reader)
    assert isinstance(first, FilePart)
    next(first.chunks)  # read only the first chunk
    second = next(reader)
    assert (second.name, b"".join(second.chunks)) == ("f2", b"deux")
    third = next(reader)
    assert (third.name, third.value) == ("x", "y")
    assert list(reader) == []


@pytest.mark.parametrize("keep", [0, 1, 10, 200, 250, 279])
def test_truncated_body_is_an_interruption(keep):
    body = body_of(part("csrf_token", b"t"), part("file", b"z" * 200, "f"))
    assert len(body) > 279
    with pytest.raises(UploadInterrupted):
        parse(body[:keep])


def test_every_truncation_of_the_sample_is_an_interruption():
    # The closing delimiter is "--" after the boundary: one byte short of it is still open.
    end = SAMPLE.index(b"--" + BOUNDARY + b"--") + len(BOUNDARY) + 4
    for keep in range(0, end - 1):
        with pytest.raises(UploadInterrupted):
            parse(SAMPLE[:keep], cuts=[keep // 2])


def test_missing_content_disposition_is_malformed():
    body = b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--"
    with pytest.raises(MalformedUpload):
        parse(body)
    with pytest.raises(MalformedUpload):
        parse(b"--" + BOUNDARY + b"\r\n\r\nx\r\n--" + BOUNDARY + b"--")


def test_bad_header_lines_are_malformed():
    for headers in (b"no colon here\r\n", b" folded first: x\r\n", b"Content-Disposition: form-data; name=\xff\r\n"):
        body = b"--" + BOUNDARY + b"\r\n" + headers + b"\r\nx\r\n--" + BOUNDARY + b"--"
        with pytest.raises(MalformedUpload):
            parse(body)


def test_limits():
    with pytest.raises(MalformedUpload):
        parse(body_of(part("big", b"a" * (MAX_FIELD_BYTES + 1))))
    assert parse(body_of(part("ok", b"a" * MAX_FIELD_BYTES)))[0][3] == b"a" * MAX_FIELD_BYTES
    with pytest.raises(RequestEntityTooLarge):
        parse(body_of(*[part(f"f{i}", b"v") for i in range(MAX_PARTS + 1)]))
    assert len(parse(body_of(*[part(f"f{i}", b"v") for i in range(MAX_PARTS)]))) == MAX_PARTS
    long_header = b"X-Pad: " + b"p" * MAX_HEADER_BYTES + b"\r\n"
    with pytest.raises(MalformedUpload, match="en-têtes"):
        parse(body_of(part("a", b"1", extra=long_header)), read_size=4096)


def test_boundary_of():
    assert boundary_of('multipart/form-data; boundary="abc"') == b"abc"
    for bad in (
        None,
        "",
        "text/plain; boundary=abc",
        "multipart/form-data",
        "multipart/form-data; boundary=" + "x" * 201,
    ):
        with pytest.raises(MalformedUpload):
            boundary_of(bad)


# ---------------------------------------------------------------- differential fuzz

FUZZ_BOUNDARY = b"bnd"


def werkzeug_parts(body: bytes, boundary: bytes) -> list:
    decoder = MultipartDecoder(boundary)
    decoder.receive_data(body)
    decoder.receive_data(None)
    out: list = []
    current: list | None = None
    while True:
        event = decoder.next_event()
        if isinstance(event, NeedData | Epilogue):
            return out
        if isinstance(event, File):
            current = ["file", event.name, event.filename, b""]
            out.append(current)
        elif isinstance(event, Field):
            current = ["field", event.name, None, b""]
            out.append(current)
        elif isinstance(event, Data):
            assert current is not None
            current[3] += event.data


def clean(data: bytes) -> bytes:
    # Werkzeug also accepts a lone CR or LF before "--boundary"; keep the body unambiguous.
    return data.replace(b"--" + FUZZ_BOUNDARY, b"--bnX")


fuzz_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"-", b"--", b"b", b"bn", b"x", b"\x00", b"\xe9"]), max_size=60
).map(b"".join)
fuzz_part = st.tuples(
    st.booleans(),
    st.text(alphabet="abcé_-", min_size=1, max_size=6),
    st.text(alphabet="abcé. _-", min_size=0, max_size=8),
    fuzz_bytes,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(fuzz_part, max_size=5),
    preamble=fuzz_bytes,
    epilogue=fuzz_bytes,
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    read_size=st.sampled_from([1, 2, 5, 64, 1 << 20]),
)
def test_same_parts_as_werkzeug(parts, preamble, epilogue, cuts, read_size):
    body = bytearray()
    if preamble:
        body += clean(preamble) + b"\r\n"
    expected = []
    for is_file, name, filename, content in parts:
        content = clean(content)
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if is_file else "")
        body += b"--" + FUZZ_BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n"
        body += content + b"\r\n"
        if is_file:
            expected.append(["file", name, filename, content])
        else:
            expected.append(["field", name, None, content])
    body += b"--" + FUZZ_BOUNDARY + b"--" + epilogue
    body = bytes(body)

    ours = []
    for item in MultipartReader(Pieces(body, cuts), FUZZ_BOUNDARY, read_size).parts():
        if isinstance(item, FilePart):
            ours.append(["file", item.name, item.filename, b"".join(item.chunks)])
        else:
            ours.append(["field", item.name, None, item.value.encode()])
    # Fields are decoded as UTF-8 with replacement; compare them decoded the same way.
    for entry in expected:
        if entry[0] == "field":
            entry[3] = entry[3].decode("utf-8", "replace").encode()
    theirs = werkzeug_parts(body, FUZZ_BOUNDARY)
    for entry in theirs:
        if entry[0] == "field":
            entry[3] = entry[3].decode("utf-8", "replace").encode()
    assert ours == expected
    assert theirs == expected


def _request(body: bytes, content_length: bool = True):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    builder = EnvironBuilder(method="POST", input_stream=io.BytesIO(body), headers=headers)
    environ = builder.get_environ()
    if content_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    return Request(environ)


def _parse_traced(request) -> tuple[list, int]:
    import tracemalloc

    from portal.documents.upload import upload_reader

    tracemalloc.start()
    try:
        out = []
        for item in upload_reader(request, 1 << 30).parts():
            if isinstance(item, FilePart):
                out.append(b"".join(bytes(c) for c in item.chunks))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


def test_a_small_body_is_read_with_buffers_its_size():
    """Two 1 MiB read buffers, zeroed page by page, cost a small upload more than parsing it:
    a body whose Content-Length is small gets buffers to match."""
    content = os.urandom(8192)
    out, peak = _parse_traced(_request(body_of(part("file", content, "petit.txt"))))
    assert out == [content]
    assert peak < 512 * 1024, peak


@pytest.mark.parametrize("size", [70_000, 1 << 20, 3 * (1 << 20) + 5])
def test_bodies_of_any_declared_size_parse_whole(size):
    content = os.urandom(size)
    out, _peak = _parse_traced(_request(body_of(part("a", b"1"), part("file", content, "f.bin"), part("b", b"2"))))
    assert out == [content]


def test_a_body_without_content_length_still_parses():
    content = os.urandom(200_000)
    out, _peak = _parse_traced(_request(body_of(part("file", content, "f.bin")), content_length=False))
    assert out == [content]
