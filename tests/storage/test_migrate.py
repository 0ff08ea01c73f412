"""`flask storage migrate --to s3` (and back): copy, verify, switch per row, resume."""

from __future__ import annotations

from portal.audit.context import Actor
from portal.documents.models import File, FileVersion
from portal.extensions import db
from portal.storage import migrate
from portal.storage.blobs import get_blob_store


def _files(app, make_org, make_user, make_armoire, count=4):
    from portal.documents.services import uploads

    org = make_org()
    admin = make_user("admin", org=org)
    actor = Actor(org.id, admin.id)
    armoire = make_armoire(org)
    contents = {}
    for n in range(count):
        body = f"piece {n}\n".encode() * (30_000 * (n + 1))
        version = uploads.store_upload(actor, armoire, None, f"piece-{n}.txt", iter([body]), None)
        db.session.commit()
        contents[version.file_id] = body
    return actor, contents


def _read_all(actor, contents):
    from portal.documents.services import reading

    for file_id, body in contents.items():
        _v, chunks = reading.open_version_stream(actor, db.session.get(File, file_id))
        assert b"".join(chunks) == body
        db.session.commit()


def test_migrate_to_s3_and_back(app, bucket, s3_endpoint, make_org, make_user, make_armoire):
    _client, name = bucket
    actor, contents = _files(app, make_org, make_user, make_armoire)
    assert {v.storage_backend for v in db.session.query(FileVersion)} == {"local"}
    app.config.update(COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=s3_endpoint)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["storage", "migrate", "--to", "s3"])
    assert result.exit_code == 0, result.output
    assert "4 blob(s) moved to s3, 0 failed." in result.output
    db.session.expire_all()
    keys = {v.storage_key for v in db.session.query(FileVersion)}
    assert {v.storage_backend for v in db.session.query(FileVersion)} == {"s3"}
    assert set(get_blob_store("s3").iter_keys()) == keys
    assert list(get_blob_store("local").iter_keys()) == []  # source copies deleted after the switch
    _read_all(actor, contents)
    check = runner.invoke(args=["documents", "check-storage"])
    assert check.exit_code == 0, check.output

    again = runner.invoke(args=["storage", "migrate", "--to", "s3"])
    assert "0 blob(s) moved" in again.output  # nothing left to do

    back = runner.invoke(args=["storage", "migrate", "--to", "local"])
    assert back.exit_code == 0 and "4 blob(s) moved to local" in back.output
    db.session.expire_all()
    assert set(get_blob_store("local").iter_keys()) == keys
    assert list(get_blob_store("s3").iter_keys()) == []
    _read_all(actor, contents)


def test_migrate_resumes_after_a_kill_at_each_step(app, bucket, s3_endpoint, make_org, make_user, make_armoire):
    """The two windows a kill can hit: after the copy (row not switched) and after the
    switch's commit (source copy not yet deleted)."""
    _client, name = bucket
    actor, contents = _files(app, make_org, make_user, make_armoire, count=3)
    app.config.update(COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=s3_endpoint)
    local, s3 = get_blob_store("local"), get_blob_store("s3")
    first, second, _third = list(migrate.pending_versions("s3"))
    migrate.copy_verified(local, s3, first.key)  # killed here: copied, row still local
    migrate.copy_verified(local, s3, second.key)
    assert migrate.switch_pointer(second, "s3")
    db.session.commit()  # killed here: switched, local copy still there
    _read_all(actor, contents)  # every row reads from a store that holds its blob

    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage", "migrate", "--to", "s3"])
    assert result.exit_code == 0 and "2 blob(s) moved to s3" in result.output, result.output
    assert second.key in set(local.iter_keys())  # the leftover: an orphan of the local store
    check = runner.invoke(args=["documents", "check-storage", "--fix", "--grace-seconds", "0"])
    assert second.key in check.output
    assert list(local.iter_keys()) == []
    db.session.expire_all()
    assert len(list(s3.iter_keys())) == 3 and not any(v.blob_missing for v in db.session.query(FileVersion))
    # The copy made before the kill was verified and kept, not written a second time.
    versions = _client.list_object_versions(Bucket=name).get("Versions", [])
    assert sorted(item["Key"] for item in versions) == sorted(s3.prefix + key for key in s3.iter_keys())
    _read_all(actor, contents)


def test_a_copy_that_does_not_match_is_not_switched(app, bucket, s3_endpoint, make_org, make_user, make_armoire):
    _client, name = bucket
    _files(app, make_org, make_user, make_armoire, count=1)
    app.config.update(COFFRE_STORAGE="s3", COFFRE_S3_BUCKET=name, COFFRE_S3_ENDPOINT_URL=s3_endpoint)
    (item,) = migrate.pending_versions("s3")
    local, s3 = get_blob_store("local"), get_blob_store("s3")

    class Corrupting:
        """The target as a store that flips one byte on the way (a faulty proxy or disk)."""

        name = "s3"

        def __getattr__(self, attribute):
            return getattr(s3, attribute)

        def create(self, key=None):
            import contextlib

            @contextlib.contextmanager
            def writing():
                with s3.create(key) as pending:
                    real = pending.file

                    class Flip:
                        def write(self, data):
                            data = bytearray(data)
                            data[-1] ^= 1
                            return real.write(bytes(data))

                    pending.file = Flip()
                    yield pending

            return writing()

    try:
        migrate.copy_verified(local, Corrupting(), item.key)
    except migrate.CopyMismatchError:
        pass
    else:
        raise AssertionError("a corrupted copy was accepted")
    assert not s3.exists(item.key) and local.exists(item.key)
    db.session.expire_all()
    assert db.session.get(FileVersion, item.version_id).storage_backend == "local"
