"""The many-boxes topology with local processes: two gunicorn instances sharing
PostgreSQL, Redis, and moto's server as S3 and KMS (docs/deployment.md)."""

from __future__ import annotations

import os
import secrets
import threading

import boto3
import pytest
import redis
import requests
from sqlalchemy import select

from portal.documents.models import FileVersion
from portal.extensions import db
from tests.conftest import TEST_PASSWORD, csrf_token_from
from tests.edge.servers import GunicornServer

pytestmark = pytest.mark.skipif(
    os.environ.get("COFFRE_TEST_DATABASE") != "postgresql", reason="several instances need PostgreSQL"
)
REDIS = "redis://127.0.0.1:6379/13"


@pytest.fixture
def topology(app, bucket, s3_endpoint, database_url, tmp_path):
    _client, name = bucket
    kms = boto3.client("kms", endpoint_url=s3_endpoint)
    key_id = kms.create_key(Description="coffre topology")["KeyMetadata"]["KeyId"]
    prefix = f"coffre-topo-{secrets.token_hex(4)}"
    overrides = {
        "SERVER_NAME": None,
        "COFFRE_STORAGE": "s3",
        "COFFRE_S3_BUCKET": name,
        "COFFRE_S3_ENDPOINT_URL": s3_endpoint,
        "COFFRE_KEY_PROVIDER": "kms",
        "COFFRE_KMS_KEY_ID": key_id,
        "COFFRE_KMS_ENDPOINT_URL": s3_endpoint,
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": REDIS,
        "RATELIMIT_KEY_PREFIX": prefix,
        "API_UPLOAD_RATE_LIMIT": "1000/minute",
    }
    app.config.update({k: v for k, v in overrides.items() if k != "SERVER_NAME"})
    app.extensions.pop("coffre_key_provider", None)
    servers = [GunicornServer(database_url, tmp_path / f"instance-{n}", overrides) for n in (1, 2)]
    try:
        yield [f"http://127.0.0.1:{server.port}" for server in servers]
    finally:
        for server in servers:
            server.stop()
        store = redis.Redis.from_url(REDIS)
        for key in store.scan_iter(f"*{prefix}*"):
            store.delete(key)
        store.close()


def _upload(base, secret, armoire_id, content, name="piece.bin"):
    return requests.post(
        f"{base}/api/v1/fichiers",
        data={"armoire_id": str(armoire_id)},
        files={"file": (name, content)},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


def _sign_in(session, base, email):
    page = session.get(f"{base}/auth/login", timeout=30)
    token = csrf_token_from(page.text)
    return session.post(
        f"{base}/auth/login",
        data={"email": email, "password": TEST_PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )


def test_two_instances_share_storage_keys_limits_and_quota(
    topology, bucket, make_org, make_user, make_token, make_armoire
):
    first, second = topology
    s3, name = bucket
    org = make_org("Topologie")
    admin = make_user("admin", org=org, email="admin@topologie.test")
    secret = make_token(admin)
    armoire = make_armoire(org)

    # Upload through instance 1, download through instance 2.
    content = os.urandom(3 * 1024 * 1024 + 17)
    receipt = _upload(first, secret, armoire.id, content)
    assert receipt.status_code == 201, receipt.text
    file_id = receipt.json()["file_id"]
    download = requests.get(
        f"{second}/api/v1/fichiers/{file_id}/contenu", headers={"Authorization": f"Bearer {secret}"}, timeout=60
    )
    assert download.status_code == 200 and download.content == content
    db.session.rollback()
    version = db.session.scalar(select(FileVersion).where(FileVersion.file_id == file_id))
    assert version.storage_backend == "s3"
    object_name = f"blobs/{version.storage_key}"
    assert s3.head_object(Bucket=name, Key=object_name)["ContentLength"] > len(content)

    # Trash through the API, purge through instance 2's web page: the object is gone, every version.
    assert (
        requests.delete(
            f"{second}/api/v1/fichiers/{file_id}", headers={"Authorization": f"Bearer {secret}"}, timeout=30
        ).status_code
        == 204
    )
    browser = requests.Session()
    assert _sign_in(browser, second, admin.email).status_code in (302, 303)
    trash_page = browser.get(f"{second}/corbeille", timeout=30)
    purged = browser.post(
        f"{second}/corbeille/{file_id}/detruire",
        data={"csrf_token": csrf_token_from(trash_page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert purged.status_code in (302, 303), purged.text[:500]
    listed = s3.list_object_versions(Bucket=name, Prefix=object_name)
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")

    # The sign-in limit (5 a minute per address) is counted across both instances.
    statuses = []
    for attempt in range(8):
        visitor = requests.Session()
        base = (first, second)[attempt % 2]
        page = visitor.get(f"{base}/auth/login", timeout=30)
        statuses.append(
            visitor.post(
                f"{base}/auth/login",
                data={"email": "inconnu@topologie.test", "password": "faux", "csrf_token": csrf_token_from(page.text)},
                allow_redirects=False,
                timeout=30,
            ).status_code
        )
    assert statuses[:5].count(429) == 0 and set(statuses[5:]) == {429}, statuses

    # Quota race: 20 parallel uploads over both instances cannot overshoot the quota.
    size = 200_000
    org.storage_quota_bytes = 5 * size + size // 2
    db.session.commit()
    armoire_id = armoire.id  # the threads have no app context to reload it
    results: list[int | str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        try:
            answer = _upload((first, second)[n % 2], secret, armoire_id, os.urandom(size), name=f"course-{n}.bin")
            status: int | str = answer.status_code
        except requests.RequestException as error:
            status = repr(error)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results.count(201) == 5, results
    assert set(results) <= {201, 413, 507, 409, 422}, results
    db.session.rollback()
    from portal.documents.services.quota import used_bytes

    used = used_bytes(org.id)  # what the quota counts (the purged file's rows are not)
    assert used <= org.storage_quota_bytes
