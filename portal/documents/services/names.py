"""Names and types: display-name cleaning and content-type sniffing."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import filetype
from flask_babel import gettext as _

from portal.documents.errors import (
    InvalidName,
)
from portal.documents.models import NAME_MAX
from portal.security.text import clean_name

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


MIME_SNIFF_BYTES = 8192
PREVIEWABLE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})


def sanitize_name(name: str | None, *, fallback: str = "sans-nom") -> str:
    """A display name: no path, no control characters, NFC, at most 255 chars (extension kept)."""
    # Browsers and old clients send full paths; only the last component is a name.
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = clean_name(text).strip(" .")
    if not text:
        return fallback
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            text = stem[: NAME_MAX - len(ext) - 1].rstrip() + "." + ext
        else:
            text = text[:NAME_MAX]
    return text


def name_for_new_version(current: str, uploaded: str | None) -> str:
    """The file's name once ``uploaded`` is its new version: its own stem, the uploaded
    file's extension when that one has a different one ("x.pdf" + "x.docx" -> "x.docx"), so
    the name keeps opening the content with the right application. An uploaded name without
    an extension, or with the same one in another case, keeps the name."""
    if not uploaded:
        return current
    new_stem, new_ext = os.path.splitext(uploaded)
    if not new_stem or not new_ext:  # ".bashrc", "notes"
        return current
    stem, ext = os.path.splitext(current)
    if not stem:
        stem, ext = current, ""
    if ext.lower() == new_ext.lower():
        return current
    return stem[: NAME_MAX - len(new_ext)].rstrip() + new_ext


def required_name(name: str | None, limit: int = NAME_MAX) -> str:
    cleaned = sanitize_name(name, fallback="")
    if not cleaned:
        raise InvalidName(_("Le nom est obligatoire."))
    if len(cleaned) > limit:
        raise InvalidName(_("Le nom ne doit pas dépasser %(limit)s caractères.", limit=limit))
    return cleaned


def detect_mime(head: bytes) -> str:
    """The MIME type from the content's first bytes; the client's claim is never used."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return kind.mime
    if not head:
        return "application/octet-stream" if head is None else "text/plain"
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The sniffed prefix may cut a multi-byte character in two.
        if error.reason != "unexpected end of data":
            return "application/octet-stream"
    return "text/plain"


TEXT_PREVIEW_EXTENSIONS = frozenset({"txt", "csv", "md", "json"})
TEXT_PREVIEW_BYTES = 1024 * 1024


def is_text_previewable(mime_type: str, name: str | None = None) -> bool:
    """Plain text (sniffed, never the client's claim) named .txt, .csv, .md or .json."""
    extension = (name or "").rpartition(".")[2].lower() if "." in (name or "") else ""
    return mime_type in {"text/plain", "application/json"} and extension in TEXT_PREVIEW_EXTENSIONS


def is_previewable(mime_type: str, name: str | None = None) -> bool:
    return mime_type in PREVIEWABLE_TYPES or is_text_previewable(mime_type, name)


def decode_text_preview(head: bytes, truncated: bool) -> str:
    """UTF-8 text of a preview's first bytes; a character cut at the limit is dropped, not garbled."""
    if truncated:
        # Back off at most 3 bytes to a character boundary.
        for cut in range(len(head), max(len(head) - 4, 0), -1):
            try:
                return head[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
    return head.decode("utf-8", errors="replace")


_ICON_BY_EXTENSION = {
    **dict.fromkeys(("xls", "xlsx", "ods", "csv"), "sheet"),
    **dict.fromkeys(("doc", "docx", "odt", "rtf"), "doc"),
    **dict.fromkeys(("ppt", "pptx", "odp"), "slides"),
    **dict.fromkeys(("zip", "7z", "rar", "tar", "gz", "tgz", "bz2", "xz"), "archive"),
    **dict.fromkeys(("json", "xml", "html", "js", "py", "sql", "yml", "yaml"), "code"),
    **dict.fromkeys(("txt", "md", "log"), "text"),
}


def icon_kind(mime_type: str | None, name: str | None = None) -> str:
    """Which file-type icon (static/img/filetypes/<kind>.svg) a file gets: by sniffed type, then extension."""
    mime = mime_type or ""
    if mime == "application/pdf":
        return "pdf"
    for prefix, kind in (("image/", "image"), ("audio/", "audio"), ("video/", "video")):
        if mime.startswith(prefix):
            return kind
    extension = (name or "").rpartition(".")[2].lower() if "." in (name or "") else ""
    if extension in _ICON_BY_EXTENSION:
        return _ICON_BY_EXTENSION[extension]
    if mime.startswith("text/"):
        return "text"
    if mime in {"application/zip", "application/gzip", "application/x-7z-compressed", "application/x-tar"}:
        return "archive"
    return "file"
