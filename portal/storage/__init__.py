"""Blob storage: opaque, atomically written files in a protected directory."""

from portal.storage.blobs import BlobStore, InvalidBlobKeyError, PendingBlob, get_blob_store

__all__ = ["BlobStore", "InvalidBlobKeyError", "PendingBlob", "get_blob_store"]
