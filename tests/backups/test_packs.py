"""Manifest format 3: objects in pack files, read by range, collected and repacked; format 2
backups (one object a file) still verified, restored and reused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

from portal.audit.context import Actor
from portal.backups import packs, retention, services
from portal.backups.manifests import Manifest
from portal.backups.models import Backup, Restore
from portal.backups.packs import PackIndex
from portal.backups.repository import Repository, get_repository
from portal.documents.models import File
from portal.documents.services import uploads
from portal.extensions import db
from tests.api.conftest import bearer
from tests.backups.conftest import damage_object, flip_byte, object_bytes


def _age(root, days: float = 3) -> None:
    past = time.time() - days * 86400
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def test_a_first_backup_packs_its_objects_into_few_files(app, admin, make_armoire, store_file, monkeypatch):
    # Packs sealed past ~3 blobs: several packs from one backup, each read by range.
    monkeypatch.setattr(packs, "PACK_TARGET", 3 * 4096)
    armoire = make_armoire(admin.organization)
    files = [store_file(admin, armoire, f"f{n}.bin", os.urandom(4000)) for n in range(12)]
    backup = services.backup_now(Actor(admin.organization_id, admin.id), "manuel")
    assert backup.status == "reussie", backup.error
    repo = get_repository()
    assert not [p for p in (repo.root / "objects").rglob("*") if p.is_file()]  # no object a file
    pack_files = sorted((repo.root / "packs").glob("*.pack"))
    assert 3 <= len(pack_files) <= 8  # 12 blobs and the parts, not 20 files
    assert not list(repo.tmp.iterdir())  # every pack sealed, none left partial
    manifest = Manifest.load(repo, backup.path)
    named = {e[0] for idx in (repo.root / "packs").glob("*.idx") for e in json.loads(idx.read_bytes())}
    assert manifest.objects() <= named
    for digest in manifest.objects():
        assert hashlib.sha256(object_bytes(digest)).hexdigest() == digest
    # Another process's repository (a fresh index) finds every object too.
    fresh = Repository(repo.root)
    assert all(fresh.object_exists(d) for d in manifest.objects())
    result = app.test_cli_runner().invoke(args=["backups", "verify", str(backup.id)])
    assert result.exit_code == 0, result.output

    # The second backup packs only what changed: one blob and the changed parts.
    actor = Actor(admin.organization_id, admin.id)
    uploads.add_version(actor, db.session.get(File, files[0].id), None, iter([b"change\n"]), 7)
    db.session.commit()
    second = services.backup_now(actor, "manuel")
    assert second.status == "reussie"
    assert len(list((repo.root / "packs").glob("*.pack"))) - len(pack_files) in (1, 2)
    assert second.summary["new_bytes"] < 0.5 * backup.summary["new_bytes"]  # the journal parts weigh here


def test_collection_deletes_repacks_or_keeps_packs_and_waits_for_running_backups(tmp_path):
    repo = Repository(tmp_path / "repo")

    def pack_of(*payloads: bytes) -> list[str]:
        batch = repo.batch()
        names = [repo.put_object(io.BytesIO(p), pending=batch)[0] for p in payloads]
        repo.make_durable(batch)
        return names

    gone_a, gone_b = pack_of(b"a" * 100, b"b" * 100)  # nothing references it: deleted
    big_live, small_dead = pack_of(b"c" * 900, b"d" * 100)  # 10% garbage: kept as it is
    small_live, big_dead = pack_of(b"e" * 100, b"f" * 900)  # 90% garbage: repacked
    assert len(list((repo.root / "packs").glob("*.pack"))) == 3
    old_packs = {repo.locate(d)[0] for d in (gone_a, big_live, small_live)}
    _age(repo.root)
    referenced = {big_live, small_live}

    # A backup running (the shared lock, in any process) keeps collection off.
    with repo.running(), repo.exclusive() as held:
        assert held is False
    with repo.exclusive() as held:
        assert held is True
        removed = repo.collect_packs(referenced, cutoff=time.time() - 86400)
    assert removed == {"packs": 2, "repacked": 1, "packed_objects": 3}  # a, b and f
    assert not repo.object_exists(gone_a) and not repo.object_exists(gone_b)
    assert not repo.object_exists(big_dead)
    assert repo.object_exists(small_dead)  # in the kept pack, until it is mostly garbage
    assert object_bytes_of(repo, big_live) == b"c" * 900
    assert object_bytes_of(repo, small_live) == b"e" * 100  # moved into a new pack
    assert repo.locate(small_live)[0] not in old_packs
    assert len(list((repo.root / "packs").glob("*.pack"))) == 2
    # Another process that read the index before the repack still finds the moved object.
    assert Repository(repo.root).open_object(small_live).read() == b"e" * 100

    # A pack whose index was never written (a run killed between the two) is garbage.
    orphan = repo.root / "packs" / ("0" * 32 + ".pack")
    orphan.write_bytes(b"x" * 10)
    _age(repo.root)
    with repo.exclusive():
        assert repo.collect_packs(referenced, cutoff=time.time() - 86400)["packs"] == 1
    assert not orphan.exists()


def object_bytes_of(repo: Repository, digest: str) -> bytes:
    with repo.open_object(digest) as handle:
        return handle.read()


def test_a_format_2_backup_with_one_object_a_file_is_verified_restored_and_reused(
    app, client, admin, make_token, make_armoire, store_file, wait
):
    """Rewrite a backup the way format 2 stored it (objects/ab/cd/<hash>, no pack)."""
    armoire = make_armoire(admin.organization)
    file = store_file(admin, armoire, "ancien.txt", b"contenu d'origine\n" * 30)
    actor = Actor(admin.organization_id, admin.id)
    backup = services.backup_now(actor, "manuel")
    repo = get_repository()
    manifest = Manifest.load(repo, backup.path)
    for digest in manifest.objects():
        data = object_bytes(digest)
        repo.object_path(digest).parent.mkdir(parents=True, exist_ok=True)
        repo.object_path(digest).write_bytes(data)
    for path in (repo.root / "packs").iterdir():
        path.unlink()
    repo.packs = PackIndex(repo.root, repo.tmp)
    repo.write_manifest(admin.organization_id, backup.id, {**manifest.body, "format": 2})
    assert Manifest.load(repo, backup.path).format == 2

    result = app.test_cli_runner().invoke(args=["backups", "verify", str(backup.id)])
    assert result.exit_code == 0, result.output
    uploads.add_version(actor, file, None, iter([b"ecrase\n"]), 7)
    db.session.commit()
    token = make_token(admin)
    response = client.post(
        f"/api/v1/sauvegardes/{backup.id}/restaurer", json={"file_id": file.id}, headers=bearer(token)
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    wait()
    job = db.session.get(Restore, response.get_json()["id"])
    assert job.status == "reussie" and job.counts["restored"] == 1, job.error
    db.session.expire_all()
    assert db.session.get(File, file.id).current_version.restored_from_version == 1

    # The next (format 3) backup reuses the files of format 2 instead of packing them again.
    before = {e for e in manifest.objects()}
    after = services.backup_now(actor, "manuel")
    assert after.status == "reussie", after.error
    reused = Manifest.load(repo, after.path).objects() & before
    assert reused and all(repo.object_path(d).is_file() for d in reused)
    assert not reused & {e[0] for i in (repo.root / "packs").glob("*.idx") for e in json.loads(i.read_bytes())}
    db.session.expire_all()
    assert retention.collect_garbage()["objects"] == 0  # all of it younger than a day

    # A damaged object of its own is named by the verification.
    victim = next(v["object"] for v in manifest.versions() if v.get("object"))
    damage_object(victim, flip_byte(10))
    result = app.test_cli_runner().invoke(args=["backups", "verify", str(backup.id)])
    assert result.exit_code == 1 and victim in result.output
    assert db.session.get(Backup, backup.id) is not None
