"""Destruction certificates: a signed JSON record (and its PDF rendering) of destroyed files."""

from __future__ import annotations

import json
from typing import Any

from flask import render_template
from sqlalchemy import select

from portal.compliance.models import DestructionCertificate
from portal.crypto.signing import sign_document, verify_document
from portal.database import utcnow
from portal.extensions import db


def issue(organization_id: int, approver, files: list[dict[str, Any]]) -> DestructionCertificate:
    """Sign and store a certificate listing ``files`` (already destroyed in this transaction)."""
    from portal.organizations.models import Organization

    certificate = DestructionCertificate(
        organization_id=organization_id, approved_by_id=approver.id if approver else None, signed_json="{}"
    )
    db.session.add(certificate)
    db.session.flush()
    organization = db.session.get(Organization, organization_id)
    body = {
        "kind": "coffre.destruction-certificate",
        "version": 1,
        "certificate_id": certificate.id,
        "organization": {"id": organization_id, "name": organization.name if organization else None},
        "issued_at": utcnow().isoformat(),
        "approved_by": {"id": approver.id, "name": approver.name, "email": approver.email} if approver else None,
        "files": files,
    }
    certificate.signed_json = json.dumps(sign_document(body), ensure_ascii=False, sort_keys=True, indent=2)
    db.session.flush()
    return certificate


def document(certificate: DestructionCertificate) -> dict[str, Any]:
    return json.loads(certificate.signed_json)


def verify_text(text: str | bytes) -> dict[str, Any]:
    """The body of a certificate file once checked against this instance's key (raises
    ``SignatureInvalid`` otherwise)."""
    from portal.crypto.signing import SignatureInvalid, instance_public_key

    try:
        parsed = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise SignatureInvalid("not JSON") from None
    body = verify_document(parsed, instance_public_key())
    if body.get("kind") != "coffre.destruction-certificate":
        raise SignatureInvalid("not a destruction certificate")
    return body


def render_pdf(certificate: DestructionCertificate) -> bytes:
    from weasyprint import HTML

    signed = document(certificate)
    html = render_template("compliance/certificate_pdf.html", body=signed["body"], signed=signed)
    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"certificate rendering fetches nothing ({url[:40]})")


def recent(organization_id: int, limit: int = 10) -> list[DestructionCertificate]:
    return list(
        db.session.execute(
            select(DestructionCertificate)
            .where(DestructionCertificate.organization_id == organization_id)
            .order_by(DestructionCertificate.id.desc())
            .limit(limit)
        ).scalars()
    )
