"""What the portal holds about one member, as a ZIP streamed while it is built.

``member.json`` holds the profile, the membership and role, sessions, sign-ins, API token
metadata (never a secret) and the list of files; ``journal.jsonl`` every journal entry the
member made or that is about them; ``fichiers/`` the live versions the member uploaded of
files neither in the trash nor purged, decrypted on the fly. ``zipfile`` writes to a sink
that is drained after every chunk (an unseekable stream: sizes go in data descriptors), so
neither the archive nor any plaintext is ever written to disk nor held whole in memory.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from sqlalchemy import or_, select

from portal.api.models import ApiToken
from portal.audit.context import Actor
from portal.audit.models import AuditEntry
from portal.audit.services import record
from portal.auth.models import User, UserSession
from portal.documents.models import Armoire, File, FileVersion
from portal.extensions import db
from portal.security.text import json_dumps

JOURNAL_BATCH = 1000
SIGN_IN_ACTIONS = (
    "user.login",
    "user.login_failed",
    "user.logout",
    "user.locked_out",
    "user.2fa_failed",
    "sso.login",
    "sso.login_failed",
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]+")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _about(user: User):
    return or_(
        AuditEntry.user_id == user.id,
        (AuditEntry.target_type == "user") & (AuditEntry.target_id == user.id),
    )


def _entry(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": _iso(row.created_at),
        "actor_user_id": row.user_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "target_label": row.target_label,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "details": row.details,
    }


def uploaded_versions(user: User) -> list[tuple[int, int]]:
    """(file id, version number) of every live version the member uploaded."""
    rows = db.session.execute(
        select(FileVersion.file_id, FileVersion.number)
        .join(File, File.id == FileVersion.file_id)
        .where(
            File.organization_id == user.organization_id,
            FileVersion.author_id == user.id,
            File.deleted_at.is_(None),
            File.purged_at.is_(None),
            FileVersion.storage_key.is_not(None),
            FileVersion.blob_missing.is_(False),
        )
        .order_by(FileVersion.file_id, FileVersion.number)
    ).all()
    return [(row.file_id, row.number) for row in rows]


def record_export(member: User, actor: Actor, channel: str | None = None) -> None:
    """Journal that ``member``'s data is being exported (before the first byte is served)."""
    details: dict[str, Any] = {"versions": len(uploaded_versions(member))}
    if channel:
        details["channel"] = channel
    record(
        "user.data_exported",
        actor,
        target_type="user",
        target_id=member.id,
        target_label=member.email,
        details=details,
    )


def summary(user: User) -> dict[str, Any]:
    """Everything but the journal and the files' bytes."""
    sessions = db.session.execute(
        select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.id)
    ).scalars()
    tokens = db.session.execute(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).scalars()
    sign_ins = db.session.execute(
        select(AuditEntry)
        .where(
            AuditEntry.organization_id == user.organization_id,
            AuditEntry.action.in_(SIGN_IN_ACTIONS),
            _about(user),
        )
        .order_by(AuditEntry.id)
    ).scalars()
    files = db.session.execute(
        select(File, FileVersion, Armoire.name)
        .join(FileVersion, FileVersion.file_id == File.id)
        .join(Armoire, Armoire.id == File.armoire_id)
        .where(File.organization_id == user.organization_id, FileVersion.author_id == user.id)
        .where(File.deleted_at.is_(None), File.purged_at.is_(None))
        .order_by(File.id, FileVersion.number)
    ).all()
    return {
        "format": "coffre-member-export/1",
        "profile": {
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "locale": user.locale,
            "created_at": _iso(user.created_at),
            "email_confirmed_at": _iso(user.email_confirmed_at),
            "last_login_at": _iso(user.last_login_at),
            "password_changed_at": _iso(user.password_changed_at),
            "two_factor_method": user.two_factor_method,
            "active": user.active,
            "pseudonymised_at": _iso(user.pseudonymised_at),
        },
        "memberships": [
            {"organization_id": user.organization_id, "organization": user.organization.name, "role": user.role}
        ],
        "sessions": [
            {
                "id": row.id,
                "created_at": _iso(row.created_at),
                "last_seen_at": _iso(row.last_seen_at),
                "revoked_at": _iso(row.revoked_at),
                "ip": row.ip,
                "user_agent": row.user_agent,
            }
            for row in sessions
        ],
        "sign_ins": [_entry(row) for row in sign_ins],
        "api_tokens": [
            {
                "id": row.id,
                "name": row.name,
                "prefix": row.prefix,
                "created_at": _iso(row.created_at),
                "expires_at": _iso(row.expires_at),
                "last_used_at": _iso(row.last_used_at),
                "revoked_at": _iso(row.revoked_at),
            }
            for row in tokens
        ],
        "files": [
            {
                "file_id": file.id,
                "name": file.name,
                "armoire": armoire,
                "version": version.number,
                "size": version.size,
                "sha256": version.sha256,
                "mime_type": version.mime_type,
                "uploaded_at": _iso(version.created_at),
                "path_in_archive": archive_path(file.id, version.number, armoire, file.name),
                "content_available": version.storage_key is not None and not version.blob_missing,
            }
            for file, version, armoire in files
        ],
    }


def archive_path(file_id: int, number: int, armoire: str, name: str) -> str:
    # The names are the members' own: no separator, no "..", no control character may
    # steer where an unzipping tool writes.
    safe_armoire = _UNSAFE.sub("_", armoire).strip(". ") or "armoire"
    safe_name = _UNSAFE.sub("_", name).strip(". ") or "fichier"
    return f"fichiers/{safe_armoire}/{file_id}-v{number}-{safe_name}"


def _journal_lines(user: User) -> Iterator[bytes]:
    after = 0
    while True:
        rows = list(
            db.session.execute(
                select(AuditEntry)
                .where(AuditEntry.organization_id == user.organization_id, AuditEntry.id > after, _about(user))
                .order_by(AuditEntry.id)
                .limit(JOURNAL_BATCH)
            ).scalars()
        )
        for row in rows:
            yield (json_dumps(_entry(row)) + "\n").encode()
        if len(rows) < JOURNAL_BATCH:
            return
        after = rows[-1].id
        for row in rows:
            db.session.expunge(row)


class _Sink(io.RawIOBase):
    """An unseekable write target whose bytes are taken out as the archive grows."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def stream_zip(user_id: int, actor: Actor) -> Iterator[bytes]:
    """The archive, chunk by chunk. Consume it with no write transaction open.

    Takes an id, not a User: a streamed response runs after its view returned, when the
    view's session (and every object loaded in it) may be gone; everything is read here.
    """
    from portal.documents.services.reading import open_version_stream

    user = db.session.get(User, user_id)
    if user is None:
        return
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
    data = summary(user)
    archive.writestr("member.json", json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))
    yield sink.drain()
    with archive.open("journal.jsonl", "w", force_zip64=True) as handle:
        for line in _journal_lines(user):
            handle.write(line)
            if sum(map(len, sink._chunks)) > 64 * 1024:
                yield sink.drain()
    yield sink.drain()
    paths = {(item["file_id"], item["version"]): item["path_in_archive"] for item in data["files"]}
    for file_id, number in uploaded_versions(user):
        file = db.session.get(File, file_id)
        if file is None or file.deleted_at is not None or file.purged_at is not None:
            continue  # trashed since the summary was read
        _, chunks = open_version_stream(actor, file, number, record_access=False)
        # The bytes come from the blob store: no database transaction stays open meanwhile.
        db.session.rollback()
        with archive.open(paths[(file_id, number)], "w", force_zip64=True) as handle:
            for chunk in chunks:
                handle.write(chunk)
                yield sink.drain()
        yield sink.drain()
    archive.close()
    yield sink.drain()
