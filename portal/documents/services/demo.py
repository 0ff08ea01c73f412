"""Demo documents: a few small generated files for a new demo organisation."""

from __future__ import annotations

import logging
import struct
import zlib
from typing import TYPE_CHECKING

from portal.audit.context import Actor
from portal.documents.models import Armoire, File
from portal.documents.services.armoires import create_armoire
from portal.documents.services.folders import create_folder
from portal.documents.services.uploads import store_upload
from portal.extensions import db
from portal.security.tenancy import scoped

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def demo_png() -> bytes:
    """A 16×16 two-colour PNG, built with zlib only."""
    width = height = 16
    rows = b"".join(
        b"\x00" + b"".join((b"\x1f\x4e\x79" if (x // 4 + y // 4) % 2 else b"\xf2\xc1\x4e") for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def demo_pdf(text: str) -> bytes:
    """A one-page PDF with a line of text, cross-reference offsets computed."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def seed_demo_documents(organization_id: int, author_id: int) -> list[File]:
    """Add a few small generated files to the organisation's first armoire (creating one if needed)."""
    actor = Actor(organization_id, author_id, user_agent="demo-data")
    armoire = db.session.execute(scoped(Armoire, organization_id).order_by(Armoire.id).limit(1)).scalar_one_or_none()
    if armoire is None:
        armoire = create_armoire(actor, "Documents", "Documents de démonstration")
    folder = create_folder(actor, armoire, None, "Notes de service")
    samples = [
        (
            None,
            "Bienvenue dans Coffre.txt",
            "Bienvenue dans Coffre.\nChaque version de chaque fichier est chiffrée avec sa propre clé.\n".encode(),
        ),
        (None, "Procès-verbal AG 2026.pdf", demo_pdf("Proces-verbal de l'assemblee generale 2026")),
        (folder, "Logo.png", demo_png()),
    ]
    files = []
    for target, name, content in samples:
        version = store_upload(actor, armoire, target, name, [content], len(content))
        files.append(db.session.get(File, version.file_id))
    return files
