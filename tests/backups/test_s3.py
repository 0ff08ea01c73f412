"""Backups in an S3 bucket: boto3 against moto's server on loopback (a real HTTP round trip)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from portal.audit.context import Actor
from portal.backups import restores, services
from portal.backups.models import Backup, Restore
from portal.documents.models import File
from portal.documents.services import uploads
from portal.extensions import db
from tests.backups.conftest import read_contents

SECRET = b"piece comptable confidentielle\n" * 40


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_backup_verify_restore_and_purge_in_a_bucket(app_factory, s3_endpoint, make_armoire, tmp_path):
    app = app_factory(COFFRE_BACKUP_S3_BUCKET="coffre-sauvegardes", COFFRE_BACKUP_S3_ENDPOINT_URL=s3_endpoint)
    bucket = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket.create_bucket(Bucket="coffre-sauvegardes")
    with app.app_context():
        from portal.auth.models import User
        from portal.organizations.models import Organization

        org = Organization(name="S3", require_2fa=False)
        db.session.add(org)
        db.session.commit()
        admin = User(organization_id=org.id, email="s3@example.test", name="Admin S3", role="admin")
        db.session.add(admin)
        db.session.commit()
        actor = Actor(org.id, admin.id)
        armoire = make_armoire(org)
        version = uploads.store_upload(actor, armoire, None, "piece.txt", iter([SECRET]), None)
        db.session.commit()
        file_id = version.file_id

        first = services.backup_now(actor, "manuel")
        assert first.status == "reussie", first.error
        names = [item["Key"] for item in bucket.list_objects_v2(Bucket="coffre-sauvegardes")["Contents"]]
        assert any(n.startswith("objects/") for n in names) and f"manifests/{org.id}/{first.id}.json" in names
        stored = b"".join(bucket.get_object(Bucket="coffre-sauvegardes", Key=n)["Body"].read() for n in names)
        assert SECRET[:30] not in stored  # ciphertext only
        second = services.backup_now(actor, "manuel")
        manifest_size = bucket.head_object(Bucket="coffre-sauvegardes", Key=second.path)["ContentLength"]
        from portal.backups.manifests import Manifest

        repo = services.get_repository()
        known = {ref["object"] for ref in Manifest.load(repo, first.path).part_refs()}
        changed = [r for r in Manifest.load(repo, second.path).part_refs() if r["object"] not in known]
        # No blob or key again: the top and the parts that changed (the journal gained backup.created).
        assert second.summary["new_bytes"] == manifest_size + sum(r["size"] for r in changed)
        assert len(changed) == 1

        runner = app.test_cli_runner()
        assert runner.invoke(args=["backups", "verify", "--all"]).exit_code == 0

        uploads.add_version(actor, db.session.get(File, file_id), None, iter([b"autre\n"]), 6)
        db.session.commit()
        job = restores.start_restore(actor, db.session.get(Backup, first.id), {"file_id": file_id})
        db.session.commit()
        restores.run_restore(job.id)
        db.session.expire_all()
        assert db.session.get(Restore, job.id).counts["restored"] == 1
        assert db.session.get(File, file_id).current_version.sha256 == version.sha256

        # A corrupted object in the bucket is named by verify.
        body = read_contents(first.path)
        digest = body["versions"][0]["object"]
        bucket.put_object(Bucket="coffre-sauvegardes", Key=f"objects/{digest[:2]}/{digest[2:4]}/{digest}", Body=b"x")
        failed = runner.invoke(args=["backups", "verify", str(first.id)])
        assert failed.exit_code == 1 and digest in failed.output

        # A purge deletes the wrapped key from the bucket too.
        from portal.documents.services import trash

        uid = next(v["data_key_uid"] for v in body["versions"] if v["file_id"] == file_id)
        assert services.get_repository().read_key(org.id, uid) is not None
        trash.trash_file(actor, db.session.get(File, file_id))
        db.session.commit()
        trash.purge_file(actor, db.session.get(File, file_id))
        db.session.commit()
        assert services.get_repository().read_key(org.id, uid) is None
        db.session.remove()
