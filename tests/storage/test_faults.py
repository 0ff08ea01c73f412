"""S3 unreachable in the middle of an upload: 503 problem+json, no row, no part kept."""

from __future__ import annotations

import io
import os
from urllib.parse import urlsplit

from sqlalchemy import func, select

from portal.documents.models import File, FileVersion
from portal.extensions import db
from portal.storage.s3 import MIB, S3BlobStore, s3_client
from tests.storage.proxy import CuttableProxy

BOUNDARY = "coffre-fault-boundary"


class CuttingBody(io.RawIOBase):
    """A multipart request body that cuts the store once ``after`` bytes have been read."""

    def __init__(self, body: bytes, after: int, cut) -> None:
        self._body = io.BytesIO(body)
        self._after = after
        self._cut = cut

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._body.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._body.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(size)
        if self._body.tell() >= self._after and self._cut is not None:
            self._cut()
            self._cut = None
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_store_unreachable_mid_upload(app, client, bucket, s3_endpoint, contributor, make_token, make_armoire, org):
    s3, name = bucket
    endpoint = urlsplit(s3_endpoint)
    proxy = CuttableProxy(endpoint.hostname, endpoint.port)
    app.config.update(COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=proxy.url)
    armoire = make_armoire(org)
    secret = make_token(contributor)
    content = os.urandom(40 * MIB)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="armoire_id"\r\n\r\n{armoire.id}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="gros.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{BOUNDARY}--\r\n".encode()

    response = client.post(
        "/api/v1/fichiers",
        input_stream=CuttingBody(body, 20 * MIB, proxy.cut),  # two parts sent, then the store is gone
        content_length=len(body),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 503 and name not in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(File)) == 0
    assert db.session.scalar(select(func.count()).select_from(FileVersion)) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=name)

    # The abort could not reach the store either; once it is back, the sweep (check-storage
    # --fix, which the docs tell operators to schedule) aborts what is left: no part stays.
    direct = S3BlobStore(s3_client(s3_endpoint), name, "blobs/")
    direct.sweep_temp(older_than_seconds=0)
    assert direct.pending_uploads() == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    # The app's client still holds pooled connections to the cut proxy.
    app.extensions.pop("coffre_s3_blob_store")[1].client.close()
    direct.client.close()
