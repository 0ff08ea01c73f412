"""Blob storage behind one interface (``portal.storage.base``): the local directory
(``blobs.BlobStore``) or an S3-compatible bucket (``s3.S3BlobStore``), chosen by COFFRE_STORAGE."""

from portal.storage.blobs import BlobStore, InvalidBlobKeyError, PendingBlob, get_blob_store

__all__ = ["BlobStore", "InvalidBlobKeyError", "PendingBlob", "get_blob_store"]
