"""`flask storage migrate --to s3` killed with SIGKILL in the middle, then run again: a real
process, a real kill, the real command (issue 17)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from portal.audit.context import Actor
from portal.documents.models import Armoire, File, FileVersion
from portal.extensions import db
from portal.storage.blobs import get_blob_store
from portal.storage.s3 import MIB
from tests.edge.servers import APP_SPEC, ROOT


def _migrate(database_url, instance, overrides, wait=True):
    env = dict(os.environ)
    env[APP_SPEC] = json.dumps({"database_url": database_url, "instance": str(instance), "overrides": overrides})
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.edge.servers:build_app()", "storage", "migrate", "--to", "s3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        out, err = process.communicate(timeout=600)
        return process.returncode, out, err
    return process


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_migrate_killed_mid_way_resumes(app, bucket, s3_endpoint, database_url, tmp_path, make_org, make_user):
    from portal.documents.services import reading, uploads

    s3, name = bucket
    org = make_org()
    admin = make_user("admin", org=org)
    actor = Actor(org.id, admin.id)
    armoire = Armoire(organization_id=org.id, name="Migration")
    db.session.add(armoire)
    db.session.commit()

    # Blobs over one part (8 MiB) go up as multipart uploads: a kill lands in one of them.
    plaintexts: dict[tuple[int, int], bytes] = {}
    for n in range(12):
        size = 9 * MIB + n if n % 2 == 0 else 40_000 * (n + 1)
        body = os.urandom(size)
        version = uploads.store_upload(actor, armoire, None, f"piece-{n}.bin", iter([body]), None)
        db.session.commit()
        plaintexts[(version.file_id, 1)] = body
        if n % 3 == 0:
            second = os.urandom(9 * MIB + 7 if n % 2 else 50_000)
            file = db.session.get(File, version.file_id)
            uploads.add_version(actor, file, None, iter([second]), None)
            db.session.commit()
            plaintexts[(version.file_id, 2)] = second
    local = get_blob_store("local")
    ciphertexts = {}
    for key in local.iter_keys():
        with local.open(key) as handle:
            data = handle.read()
        ciphertexts[key] = (len(data), _sha(data))
    total = len(ciphertexts)
    assert total == len(plaintexts)

    overrides = {"COFFRE_STORAGE": "s3", "COFFRE_S3_BUCKET": name, "COFFRE_S3_ENDPOINT_URL": s3_endpoint}
    app.config.update(overrides)
    instance = tmp_path / "instance"
    process = _migrate(database_url, instance, overrides, wait=False)

    # Kill it once some rows have switched, not all, while a multipart upload is on the wire.
    killed_at = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            switched = db.session.scalar(
                select(func.count()).select_from(FileVersion).where(FileVersion.storage_backend == "s3")
            )
            db.session.rollback()
            if 0 < switched < total and s3.list_multipart_uploads(Bucket=name).get("Uploads"):
                process.send_signal(signal.SIGKILL)
                killed_at = switched
                break
            time.sleep(0.01)
    finally:
        if process.poll() is None and killed_at is None:
            process.kill()
        process.communicate(timeout=60)
    assert killed_at is not None, "the migration ended before it could be killed mid-way"
    assert process.returncode == -signal.SIGKILL
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads")  # the killed process left one

    code, out, err = _migrate(database_url, instance, overrides)
    assert code == 0, out + err
    assert f"{total - killed_at} blob(s) moved to s3, 0 failed." in out, out + err

    db.session.expire_all()
    versions = db.session.scalars(select(FileVersion)).all()
    assert {v.storage_backend for v in versions} == {"s3"}
    assert {v.storage_key for v in versions} == set(ciphertexts)
    # Every blob once in the bucket (one object version each), the copy of the source's bytes.
    listed = s3.list_object_versions(Bucket=name, Prefix="blobs/")
    stored = [item["Key"].removeprefix("blobs/") for item in listed.get("Versions", [])]
    assert sorted(stored) == sorted(ciphertexts), "a blob is missing or stored twice"
    assert not listed.get("DeleteMarkers")
    for key, (size, digest) in ciphertexts.items():
        data = s3.get_object(Bucket=name, Key=f"blobs/{key}")["Body"].read()
        assert (len(data), _sha(data)) == (size, digest)
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads"), "orphan multipart uploads left"
    assert list(local.iter_keys()) == []

    for (file_id, number), body in plaintexts.items():
        _v, chunks = reading.open_version_stream(actor, db.session.get(File, file_id), number)
        assert _sha(b"".join(chunks)) == _sha(body)
        db.session.commit()

    check = app.test_cli_runner().invoke(args=["documents", "check-storage", "--grace-seconds", "0"])
    assert check.exit_code == 0, check.output
    assert "0 orphan blob(s), 0 missing blob(s)." in check.output
