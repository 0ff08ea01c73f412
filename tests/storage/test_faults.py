"""S3 unreachable in the middle of an upload: 503 problem+json, no row, and the parts the
failed abort left are recorded, then aborted once the store answers."""

from __future__ import annotations

import io
import os
from urllib.parse import urlsplit

from sqlalchemy import func, select

from portal.documents.jobs import abort_abandoned_uploads_now
from portal.documents.models import File, FileVersion
from portal.extensions import db
from portal.storage.models import AbandonedUpload
from portal.storage.s3 import MIB
from tests.storage.proxy import CuttableProxy

BOUNDARY = "coffre-fault-boundary"
# moto reports every multipart upload as initiated in 2010: a grace longer than that keeps
# the listing sweep (sweep_temp, the fallback) from aborting it, so only the durable list can.
LISTING_GRACE = 10**9


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

    # The abort could not reach the store either: the upload id is on the durable list.
    abandoned = db.session.execute(select(AbandonedUpload.bucket, AbandonedUpload.object_key)).all()
    assert [row.bucket for row in abandoned] == [name]
    (upload,) = s3.list_multipart_uploads(Bucket=name)["Uploads"]  # its parts are still there
    assert upload["Key"] == abandoned[0].object_key

    # Still down: the job keeps the entry for its next run, check-storage says what is down.
    assert abort_abandoned_uploads_now() == 0
    assert db.session.scalar(select(AbandonedUpload.attempts)) == 1
    runner = app.test_cli_runner()
    down = runner.invoke(args=["documents", "check-storage", "--fix", "--grace-seconds", str(LISTING_GRACE)])
    assert down.exit_code == 1 and "blob store unavailable" in down.output, down.output

    # Back up: check-storage --fix (the quarter-hourly job does the same) aborts it.
    proxy.restore()
    fixed = runner.invoke(args=["documents", "check-storage", "--fix", "--grace-seconds", str(LISTING_GRACE)])
    assert fixed.exit_code == 0, fixed.output
    assert "abandoned multipart uploads aborted: 1" in fixed.output, fixed.output
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")
    assert db.session.scalar(select(func.count()).select_from(AbandonedUpload)) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    proxy.cut()
    app.extensions.pop("coffre_s3_blob_store")[1].client.close()


def test_the_job_aborts_recorded_uploads(app, bucket, s3_endpoint):
    """The scheduled sweep aborts what is on the list, and forgets an upload already gone."""
    from portal.storage import abandoned
    from portal.storage.blobs import get_blob_store

    s3, name = bucket
    app.config.update(COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=s3_endpoint)
    store = get_blob_store("s3")
    started = s3.create_multipart_upload(Bucket=name, Key="blobs/" + "a" * 32)["UploadId"]
    s3.upload_part(Bucket=name, Key="blobs/" + "a" * 32, UploadId=started, PartNumber=1, Body=b"x" * 1024)
    record = abandoned.recorder(app)
    record(name, "blobs/" + "a" * 32, started)
    record(name, "blobs/" + "b" * 32, "no-such-upload")
    assert abort_abandoned_uploads_now() == 2
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")
    assert db.session.scalar(select(func.count()).select_from(AbandonedUpload)) == 0
    assert store.pending_uploads() == 0
