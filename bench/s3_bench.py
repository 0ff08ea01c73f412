"""S3 blob store bench (issue 17): the portal's encrypted streaming upload to moto's S3
server and its decrypting download, against raw boto3 moving the same number of bytes
from the same kind of process.

    python -m bench.s3_bench [--mib 1024] [--rounds 1]

moto_server runs as its own process (its memory is not counted). Each measurement runs in
a fresh child process so its peak RSS (ru_maxrss) is its own: the raw boto3 baseline
(upload_fileobj / download_fileobj, boto3's defaults: 8 MiB parts, 10 threads) and the
portal (uploads.store_upload into COFFRE_STORAGE=s3, then reading.open_version_stream).
Prints MiB/s for each, the ratio portal / raw, and the peak RSS of each child.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.server import free_port

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
BLOCK = os.urandom(MIB)


def _chunks(total: int):
    sent = 0
    while sent < total:
        piece = BLOCK[: min(MIB, total - sent)]
        sent += len(piece)
        yield piece


class _Source:
    """A file-like of ``total`` bytes made on the fly (never the whole payload in memory)."""

    def __init__(self, total: int) -> None:
        self._it = _chunks(total)
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        out = bytearray(self._rest)
        while size < 0 or len(out) < size:
            piece = next(self._it, b"")
            if not piece:
                break
            out += piece
        if size >= 0:
            self._rest = bytes(out[size:])
            return bytes(out[:size])
        self._rest = b""
        return bytes(out)


class _Sink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        self.size += len(data)
        return len(data)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _result(upload_s: float, download_s: float, rss_before: float, rss_after_upload: float) -> dict:
    return {
        "upload_s": upload_s,
        "download_s": download_s,
        "rss_mib": _peak_rss_mib(),
        "rss_before_mib": rss_before,
        "rss_upload_mib": rss_after_upload,
    }


def child_raw(endpoint: str, bucket: str, total: int) -> dict:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    key = f"raw/{secrets.token_hex(8)}"
    before = _rss_now_mib()
    started = time.perf_counter()
    client.upload_fileobj(_Source(total), bucket, key)
    upload = time.perf_counter() - started
    after_upload = _peak_rss_mib()
    sink = _Sink()
    started = time.perf_counter()
    client.download_fileobj(bucket, key, sink)
    download = time.perf_counter() - started
    assert sink.size == total
    client.delete_object(Bucket=bucket, Key=key)
    return _result(upload, download, before, after_upload)


def child_portal(endpoint: str, bucket: str, total: int) -> dict:
    from portal import create_app
    from portal.audit.context import Actor
    from portal.auth.models import User
    from portal.documents.models import Armoire, File
    from portal.documents.services import reading, uploads
    from portal.extensions import db
    from portal.organizations.models import Organization

    instance = Path(tempfile.mkdtemp(prefix="coffre-s3-bench-"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'bench.db'}",
            "SECRET_KEY": secrets.token_hex(32),
            "PASSWORD_PEPPER": secrets.token_hex(32),
            "COFFRE_STORAGE_DIR": str(instance / "storage"),
            "COFFRE_MASTER_KEY_FILE": str(instance / "master.key"),
            "COFFRE_STORAGE": "s3",
            "COFFRE_S3_BUCKET": bucket,
            "COFFRE_S3_ENDPOINT_URL": endpoint,
            "SCHEDULER_ENABLED": False,
            "MAX_UPLOAD_BYTES": total + MIB,
        }
    )
    with app.app_context():
        db.create_all()
        org = Organization(name="Bench S3", require_2fa=False)
        db.session.add(org)
        db.session.commit()
        user = User(organization_id=org.id, email="bench@example.test", name="Bench", role="admin")
        armoire = Armoire(organization_id=org.id, name="Bench")
        db.session.add_all([user, armoire])
        db.session.commit()
        actor = Actor(org.id, user.id)
        before = _rss_now_mib()
        started = time.perf_counter()
        version = uploads.store_upload(actor, armoire, None, "gros.bin", _chunks(total), total)
        db.session.commit()
        upload = time.perf_counter() - started
        after_upload = _peak_rss_mib()
        file_id = version.file_id
        started = time.perf_counter()
        _v, stream = reading.open_version_stream(actor, db.session.get(File, file_id))
        db.session.commit()
        size = sum(len(chunk) for chunk in stream)
        download = time.perf_counter() - started
        assert size == total
    return _result(upload, download, before, after_upload)


def _run_child(kind: str, endpoint: str, bucket: str, total: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.s3_bench", "--child", kind, endpoint, bucket, str(total)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"),
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="moto_server's port (default: a free one)")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "ENDPOINT", "BUCKET", "BYTES"))
    args = parser.parse_args()
    if args.child:
        kind, endpoint, bucket, total = args.child
        result = (child_raw if kind == "raw" else child_portal)(endpoint, bucket, int(total))
        print(json.dumps(result))
        return

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    port = args.port or free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).list_buckets()
                break
            except Exception:
                time.sleep(0.1)
        bucket = "coffre-bench"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        total = args.mib * MIB
        print(f"{args.mib} MiB, load average {os.getloadavg()[0]:.1f} at start")
        for round_number in range(1, args.rounds + 1):
            raw = _run_child("raw", endpoint, bucket, total)
            portal = _run_child("portal", endpoint, bucket, total)
            for direction in ("upload", "download"):
                raw_rate = args.mib / raw[f"{direction}_s"]
                portal_rate = args.mib / portal[f"{direction}_s"]
                print(
                    f"round {round_number} {direction:8s} raw boto3 {raw_rate:7.1f} MiB/s  "
                    f"portal {portal_rate:7.1f} MiB/s  ratio {portal_rate / raw_rate:.2f}"
                )
            print(
                f"round {round_number} RSS before the transfer / peak after the upload / peak: "
                f"raw {raw['rss_before_mib']:.0f} / {raw['rss_upload_mib']:.0f} / {raw['rss_mib']:.0f} MiB, "
                f"portal {portal['rss_before_mib']:.0f} / {portal['rss_upload_mib']:.0f} / "
                f"{portal['rss_mib']:.0f} MiB"
            )
        print(f"load average {os.getloadavg()[0]:.1f} at end")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
