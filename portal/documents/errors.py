# ruff: noqa: N818  -- names agreed with the API engineer (NotFound, QuotaExceeded, …)
"""Typed errors of the documents services; routes map each one to an HTTP status."""

from __future__ import annotations


class DocumentError(Exception):
    """Base class: ``status`` is the HTTP answer, ``message`` is shown to the user."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DocumentError):
    status = 404


class InvalidName(DocumentError):
    status = 422


class NameConflict(DocumentError):
    status = 409


class NotEmpty(DocumentError):
    status = 409


class FileTooLarge(DocumentError):
    status = 413


class QuotaExceeded(DocumentError):
    status = 413


class SubscriptionReadOnly(DocumentError):
    """The organisation's subscription lapsed past its grace: reads work, writes wait for a payment.

    403 rather than 402 (not in the portal's status set): the action is understood and refused
    for this organisation now; the API's ``type`` is ``/problems/subscription-read-only``.
    """

    status = 403
    link_endpoint = "billing.subscription_page"


class UnsupportedMedia(DocumentError):
    status = 415


class Locked(DocumentError):
    status = 423


class UploadInterrupted(DocumentError):
    """The client went away or the body ended early: nothing was kept."""

    status = 400


class MalformedUpload(DocumentError):
    status = 400


class IntegrityFailure(DocumentError):
    """The stored content failed authentication: it is never served.

    Carries what its journal entry needs (``documents.services.reading.journal_integrity_failure``);
    ``journalled`` is set once the entry is committed, so that a failure seen by several
    layers is journalled once.
    """

    status = 409

    def __init__(
        self, message: str, *, file_id: int | None = None, version_number: int | None = None, mid_stream: bool = False
    ) -> None:
        super().__init__(message)
        self.file_id = file_id
        self.version_number = version_number
        self.mid_stream = mid_stream
        self.journalled = False


class ContentUnavailable(DocumentError):
    """The blob is missing, or its key was shredded or cannot be unwrapped."""

    status = 409


class StorageFull(DocumentError):
    """The server's blob storage is out of space (or a file size limit was hit): nothing was kept."""

    status = 507


class StorageUnavailable(DocumentError):
    """The blob store (the S3 bucket) did not answer: nothing was kept, try again later."""

    status = 503


class ShredNotRecorded(DocumentError):
    """The shred ledger cannot be written: the purge was refused, the file stays in the trash.

    503: the server cannot do it now, for a reason of its own (ledger disk, path or
    permissions) that an operator fixes; the request was valid and can be repeated as is.
    """

    status = 503


class FileNameTaken(NameConflict):
    """A live file of that name is already in the target folder (``on_conflict=refuse``)."""

    def __init__(self, message: str, *, existing_file_id: int) -> None:
        super().__init__(message)
        self.existing_file_id = existing_file_id


class UploadOffsetMismatch(DocumentError):
    """A resumable upload's PATCH does not start where the stored bytes end (tus: 409)."""

    status = 409

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class ChecksumMismatch(DocumentError):
    """The body of a PATCH does not match its Upload-Checksum (tus: 460); nothing was kept."""

    status = 460


class UploadGone(DocumentError):
    """A resumable upload that expired or was terminated (tus: 410 or 404)."""

    status = 410
