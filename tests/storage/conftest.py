"""Blob store fixtures: moto's S3 in server mode on loopback (the backups tests' fixture)."""

from __future__ import annotations

import secrets

import boto3
import pytest

from tests.api.conftest import make_armoire, make_token, store_file  # noqa: F401
from tests.backups.test_s3 import s3_endpoint  # noqa: F401


@pytest.fixture
def bucket(s3_endpoint):  # noqa: F811
    """A fresh bucket (versioned, as a careful operator would set it) and its client."""
    name = f"coffre-{secrets.token_hex(4)}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return client, name


@pytest.fixture
def s3_app(app, bucket, s3_endpoint):  # noqa: F811
    """The test app with COFFRE_STORAGE=s3 (read at each call of get_blob_store)."""
    _client, name = bucket
    app.config.update(
        COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=s3_endpoint, COFFRE_S3_PREFIX="blobs/"
    )
    return app
