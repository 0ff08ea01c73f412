from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

import portal.crypto.models  # noqa: F401  # the FK to cles_chiffrement needs the table in the metadata
from portal.database import UTCDateTime, utcnow
from portal.documents import name_index
from portal.documents.sortkey import sort_key
from portal.extensions import db
from portal.security.tenancy import OrgOwned

NAME_MAX = 255


def _name_key_default(context) -> str:
    # Core inserts (seeders, instance restores of older exports) get the key from the name too.
    return sort_key(context.get_current_parameters().get("name"))


class Armoire(OrgOwned, db.Model):
    """A cabinet: the top level of an organisation's documents."""

    __tablename__ = "armoires"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Folder(OrgOwned, db.Model):
    """A folder inside an armoire; ``parent_id`` None means at the armoire's root."""

    __tablename__ = "dossiers"
    __table_args__ = (
        # NULL parents never collide in a unique constraint, so root names are checked in the service.
        UniqueConstraint("armoire_id", "parent_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    armoire_id: Mapped[int] = mapped_column(ForeignKey("armoires.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), default=None)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    # Accent- and case-free form of ``name`` (see portal.documents.sortkey), kept on every write.
    name_key: Mapped[str] = mapped_column(String(NAME_MAX), default=_name_key_default)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("name")
    def _keep_name_key(self, _key: str, value: str) -> str:
        self.name_key = sort_key(value)
        return value


class File(OrgOwned, db.Model):
    """A document; its content lives in its versions. ``deleted_at`` set = in the trash."""

    __tablename__ = "fichiers"
    __table_args__ = (
        Index("ix_fichiers_armoire_folder", "armoire_id", "folder_id"),
        # Organisation-wide search and sorting by name: live files (deleted_at NULL) in name order,
        # and a name filter or count read from the index alone, without visiting table rows.
        Index("ix_fichiers_org_live_name_key", "organization_id", "deleted_at", "name_key"),
        # The search's other filters, each narrowed by its own index rather than by visiting
        # rows met in name order: folders (a folder path resolved to folder ids), author (with
        # the type, so that "author + type" is counted from the index), modification dates.
        Index("ix_fichiers_org_folder_live", "organization_id", "folder_id", "deleted_at", "name_key"),
        Index("ix_fichiers_org_author_live", "organization_id", "created_by_id", "deleted_at", "mime_type"),
        Index("ix_fichiers_org_live_updated", "organization_id", "deleted_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    armoire_id: Mapped[int] = mapped_column(ForeignKey("armoires.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("dossiers.id", ondelete="SET NULL"), default=None)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    # Accent- and case-free form of ``name`` (see portal.documents.sortkey), kept on every write.
    name_key: Mapped[str] = mapped_column(String(NAME_MAX), default=_name_key_default)
    # Denormalised from the current version, for sorting lists without a join.
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions_fichiers.id", ondelete="SET NULL", use_alter=True), default=None
    )
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_type: Mapped[str] = mapped_column(String(120), default="application/octet-stream")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    # Purged files stay as tombstones so journal entries keep pointing at a name.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Set by check-storage when a version's blob is missing: never silently deleted.
    unavailable: Mapped[bool] = mapped_column(Boolean, default=False)

    armoire: Mapped[Armoire] = relationship(lazy="joined")
    created_by = relationship("User", foreign_keys=[created_by_id], lazy="joined")
    current_version: Mapped[FileVersion | None] = relationship(foreign_keys=[current_version_id], post_update=True)

    @validates("name")
    def _keep_name_key(self, _key: str, value: str) -> str:
        self.name_key = sort_key(value)
        return value


name_index.attach(File.__table__)


def _configured_backend() -> str:
    from flask import current_app, has_app_context

    return (current_app.config.get("COFFRE_STORAGE") or "local") if has_app_context() else "local"


class FileVersion(OrgOwned, db.Model):
    """One immutable version of a file: an encrypted blob and its wrapped data key."""

    __tablename__ = "versions_fichiers"
    __table_args__ = (UniqueConstraint("file_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random, unique and never changed: the blob's AAD and the data key's context name it,
    # because the blob is written before this row (and its id) exists.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_hex(16))
    file_id: Mapped[int] = mapped_column(ForeignKey("fichiers.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    mime_type: Mapped[str] = mapped_column(String(120), default="application/octet-stream")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("utilisateurs.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    comment: Mapped[str | None] = mapped_column(String(500), default=None)
    # None until the blob is on disk (within the same transaction), and again after a purge.
    storage_key: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    # Which blob store holds storage_key ("local", "s3"; NULL: local, rows older than the
    # column). New rows take COFFRE_STORAGE; `flask storage migrate` switches it per blob.
    storage_backend: Mapped[str | None] = mapped_column(String(16), default=_configured_backend)
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("cles_chiffrement.id", ondelete="SET NULL"), default=None
    )
    restored_from_version: Mapped[int | None] = mapped_column(Integer, default=None)
    blob_missing: Mapped[bool] = mapped_column(Boolean, default=False)

    author = relationship("User", foreign_keys=[author_id], lazy="joined")
    data_key = relationship("DataKey", foreign_keys=[data_key_id])


class ResumableUpload(OrgOwned, db.Model):
    """A tus upload in progress (or finished: then it holds the receipt).

    Its bytes are a partial blob in the store's ``resumable/`` directory, sealed under a data
    key stored when the upload was created; the file and version rows are added only by the
    request that seals the last byte (documents.services.resumable).
    """

    __tablename__ = "envois_reprenables"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The id in URLs: random, so that an upload's address cannot be guessed.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_hex(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("utilisateurs.id", ondelete="CASCADE"), index=True)
    armoire_id: Mapped[int] = mapped_column(ForeignKey("armoires.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), default=None)
    filename: Mapped[str] = mapped_column(String(NAME_MAX))
    length: Mapped[int] = mapped_column(BigInteger)
    on_conflict: Mapped[str] = mapped_column(String(10), default="refuse")
    delete_after_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    # "api" (bearer token) or "web" (browser session): the journal says which.
    via: Mapped[str] = mapped_column(String(8), default="api")
    # The future version's uid: the blob's AAD and the data key's context name it.
    version_uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_hex(16))
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("cles_chiffrement.id", ondelete="SET NULL"), default=None
    )
    blob_key: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_hex(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("fichiers.id", ondelete="SET NULL"), default=None)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions_fichiers.id", ondelete="SET NULL"), default=None
    )

    data_key = relationship("DataKey", foreign_keys=[data_key_id])
