"""The daily rollups are kept in the recording transaction and always equal a full recount."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from portal.audit.context import Actor
from portal.audit.services import record
from portal.dashboard import rollups
from portal.dashboard.models import DailyActivity
from portal.extensions import db
from tests.conftest import database_backend
from tests.dashboard.conftest import on_day


def _assert_equal_to_recount(org_id: int) -> None:
    db.session.commit()
    assert rollups.stored(org_id) == rollups.recount(org_id)


def test_rollups_follow_every_recorded_entry(app, monkeypatch, org, admin, contributor, docs):
    with on_day(monkeypatch, 3):
        compta = docs.armoire(admin, "Comptabilité")
        bilan = docs.upload(contributor, compta, "bilan.pdf", b"x" * 100)
        docs.download(admin, bilan)
        docs.download(admin, bilan)
    with on_day(monkeypatch, 1):
        docs.new_version(contributor, bilan, b"y" * 50)
        docs.trash(contributor, bilan)
    record("user.login", Actor(org.id, None, ip="192.0.2.1"), target_type="user", target_label="x")
    db.session.commit()

    stored = rollups.stored(org.id)
    assert sum(stored["activity"].values()) == 7
    assert stored["armoires"][(max(day for day, _ in stored["armoires"]), compta.id)] == 2
    assert len(stored["touches"]) == 3  # admin once on day 3; contributor on days 3 and 1
    _assert_equal_to_recount(org.id)


def test_an_entry_rolled_back_is_not_counted(app, org, admin):
    record("file.renamed", Actor(org.id, admin.id), target_type="file", target_id=7, target_label="a.pdf")
    db.session.rollback()
    total = db.session.execute(sa.select(sa.func.count()).select_from(DailyActivity)).scalar_one()
    assert total == 0
    _assert_equal_to_recount(org.id)


def test_rebuild_gives_back_the_incremental_rollups(app, monkeypatch, org, admin, docs):
    with on_day(monkeypatch, 10):
        armoire = docs.armoire(admin, "RH")
        docs.upload(admin, armoire, "contrat.pdf", b"z" * 10)
    before = rollups.stored(org.id)
    rollups.rebuild(org.id)
    db.session.commit()
    assert rollups.stored(org.id) == before
    _assert_equal_to_recount(org.id)


@pytest.mark.skipif(database_backend() != "postgresql", reason="row-level concurrency is PostgreSQL's")
def test_concurrent_writers_add_up(app, org, admin):
    threads, per_thread = 6, 20
    org_id, user_id = org.id, admin.id
    db.session.rollback()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(number: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(per_thread):
                    record("file.downloaded", Actor(org_id, user_id), target_type="file", target_id=number * 100 + i)
                    db.session.commit()
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    counted = db.session.execute(
        sa.select(sa.func.sum(DailyActivity.count)).where(DailyActivity.organization_id == org_id)
    ).scalar_one()
    assert counted == threads * per_thread
    _assert_equal_to_recount(org_id)


def test_storage_counters_follow_every_change_of_a_file(app, org, admin, docs):
    from portal.dashboard import storage
    from portal.documents.services import files, trash

    def check() -> dict:
        db.session.commit()
        assert storage.stored(org.id) == storage.recount(org.id)
        return storage.stored(org.id)

    compta, rh = docs.armoire(admin, "Comptabilité"), docs.armoire(admin, "RH")
    bilan = docs.upload(admin, compta, "bilan.pdf", b"b" * 100)
    assert check() == {compta.id: (1, 1, 100)}
    docs.new_version(admin, bilan, b"v" * 50)
    assert check() == {compta.id: (1, 2, 150)}
    files.move_file(Actor(org.id, admin.id), bilan, rh, None)
    assert check() == {rh.id: (1, 2, 150)}
    docs.trash(admin, bilan)
    assert check() == {rh.id: (0, 0, 150)}  # the trash still counts against the quota
    trash.restore_from_trash(Actor(org.id, admin.id), bilan)
    assert check() == {rh.id: (1, 2, 150)}
    docs.trash(admin, bilan)
    trash.purge_file(Actor(org.id, admin.id), bilan)
    assert check() == {}
    # A change rolled back takes its counts with it.
    docs.upload(admin, compta, "garde.pdf", b"g" * 5)
    trash.trash_file(Actor(org.id, admin.id), db.session.get(type(bilan), bilan.id + 1))
    db.session.rollback()
    assert check() == {compta.id: (1, 1, 5)}
    storage.rebuild(org.id)
    assert check() == {compta.id: (1, 1, 5)}


@pytest.mark.skipif(database_backend() != "postgresql", reason="row-level concurrency is PostgreSQL's")
def test_concurrent_uploads_keep_the_storage_counters_exact(app, org, admin, docs):
    from portal.dashboard import storage
    from portal.documents.models import Armoire
    from portal.documents.services import uploads

    armoire_id = docs.armoire(admin, "Partagée").id
    org_id, user_id = org.id, admin.id
    db.session.rollback()
    threads, per_thread = 4, 3
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def uploader(number: int) -> None:
        try:
            with app.app_context():
                armoire = db.session.get(Armoire, armoire_id)
                start.wait()
                for i in range(per_thread):
                    content = b"x" * (number * 10 + i + 1)
                    uploads.store_upload(
                        Actor(org_id, user_id), armoire, None, f"f{number}-{i}.txt", iter([content]), len(content)
                    )
                    db.session.commit()
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=uploader, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    expected_bytes = sum(number * 10 + i + 1 for number in range(threads) for i in range(per_thread))
    assert storage.stored(org_id) == {armoire_id: (threads * per_thread, threads * per_thread, expected_bytes)}
    assert storage.stored(org_id) == storage.recount(org_id)
