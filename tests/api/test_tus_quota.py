"""Issue 12, point 2: a resumable upload reserves its declared length against the quota
from its creation, so parallel tus uploads are refused at once instead of after their bytes."""

from __future__ import annotations

import io
import os
import threading
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from portal.database import utcnow
from portal.documents.models import FileVersion, ResumableUpload
from portal.documents.services.quota import reserved_bytes, used_bytes
from portal.extensions import db
from portal.organizations.models import Organization
from tests.api.test_tus import b64, bearer, create, metadata
from tests.api.test_tus_live import server  # noqa: F401 - fixture

LENGTH = 100_000


def _set_quota(org_id: int, quota: int) -> None:
    db.session.execute(update(Organization).where(Organization.id == org_id).values(storage_quota_bytes=quota))
    db.session.commit()


def test_twenty_parallel_resumable_uploads_cannot_overshoot_the_quota(
    server,  # noqa: F811 - the fixture
    contributor,
    make_token,
    make_armoire,
    org,
):
    """Room for five and a half: five creations are accepted, fifteen refused at once, and the
    five then complete in parallel (their own reservation does not count against them)."""
    org_id = contributor.organization_id
    _set_quota(org_id, 5 * LENGTH + LENGTH // 2)
    secret = make_token(contributor)
    armoire_id = make_armoire(org).id
    base = f"http://127.0.0.1:{server}"
    barrier = threading.Barrier(20)
    created: list[httpx.Response] = []

    def start(i: int) -> None:
        headers = bearer(secret) | {
            "Upload-Length": str(LENGTH),
            "Upload-Metadata": f"filename {b64(f'f{i}.bin')},armoire_id {b64(str(armoire_id))}",
        }
        barrier.wait(timeout=30)
        created.append(httpx.post(base + "/api/v1/uploads/", headers=headers, timeout=60))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(response.status_code for response in created)
    assert statuses == [201] * 5 + [413] * 15, statuses
    refused = next(response for response in created if response.status_code == 413)
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    db.session.rollback()
    assert reserved_bytes(org_id) == 5 * LENGTH

    finished: list[httpx.Response] = []

    def send(location: str) -> None:
        finished.append(
            httpx.patch(
                base + httpx.URL(location).path,
                content=os.urandom(LENGTH),
                headers=bearer(secret) | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
                timeout=60,
            )
        )

    senders = [
        threading.Thread(target=send, args=(response.headers["Location"],))
        for response in created
        if response.status_code == 201
    ]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    assert sorted(response.status_code for response in finished) == [204] * 5, [r.text for r in finished]
    assert all(response.headers.get("Coffre-File-Id") for response in finished)
    db.session.rollback()
    assert used_bytes(org_id) == 5 * LENGTH
    assert reserved_bytes(org_id) == 0
    assert len(db.session.execute(select(FileVersion)).all()) == 5


def test_a_reservation_holds_the_space_until_termination_or_expiry(client, contributor, make_token, make_armoire, org):
    org_id = contributor.organization_id
    _set_quota(org_id, LENGTH + LENGTH // 2)
    secret = make_token(contributor)
    armoire = make_armoire(org)
    first = create(client, secret, LENGTH, filename="a.bin", armoire_id=armoire.id)
    assert first.status_code == 201
    assert create(client, secret, LENGTH, filename="b.bin", armoire_id=armoire.id).status_code == 413
    # A one-request upload cannot take the reserved space either.
    one_shot = client.post(
        "/api/v1/fichiers",
        data={"armoire_id": str(armoire.id), "file": (io.BytesIO(os.urandom(LENGTH)), "c.bin")},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert one_shot.status_code == 413, one_shot.get_data(as_text=True)

    assert client.delete(first.headers["Location"], headers=bearer(secret)).status_code == 204
    second = create(client, secret, LENGTH, filename="b.bin", armoire_id=armoire.id)
    assert second.status_code == 201

    # Past its 24 hours an unfinished upload no longer holds anything, even before the sweep.
    db.session.execute(update(ResumableUpload).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    assert reserved_bytes(org_id) == 0
    third = client.post(
        "/api/v1/uploads/",
        headers=bearer(secret)
        | {"Upload-Length": str(LENGTH), "Upload-Metadata": metadata(filename="d.bin", armoire_id=armoire.id)},
    )
    assert third.status_code == 201


def test_twenty_parallel_one_request_uploads_cannot_overshoot_the_quota(
    server,  # noqa: F811 - the fixture
    contributor,
    make_token,
    make_armoire,
    org,
):
    """The issue's quota race for ordinary uploads, at the issue's scale: twenty at once, room for five."""
    org_id = contributor.organization_id
    _set_quota(org_id, 5 * LENGTH + LENGTH // 2)
    secret = make_token(contributor)
    armoire_id = make_armoire(org).id
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def send(i: int) -> None:
        barrier.wait(timeout=30)
        response = httpx.post(
            f"http://127.0.0.1:{server}/api/v1/fichiers",
            data={"armoire_id": str(armoire_id)},
            files={"file": (f"f{i}.bin", os.urandom(LENGTH))},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=60,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [413] * 15, statuses
    db.session.rollback()
    assert used_bytes(org_id) == 5 * LENGTH
