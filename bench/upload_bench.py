"""Upload/download benchmark: encrypted documents through gunicorn vs the raw floor of the same stack.

For each size (default 100 MiB and 1 GiB) a fresh gunicorn (``-w 2``, sync workers) is
started on 127.0.0.1 with the bench-only routes, a contributor signs in, and:

- upload: ``--repeat`` times (default 3), alternating, the same multipart body is POSTed to
  ``/bench/brut`` (``request.stream.read`` 1 MiB at a time, discarded: the floor),
  ``/bench/brut-readinto`` (``readinto`` one reused buffer: a stricter floor, added by this
  script's app factory) and ``/armoires/<id>/televerser`` (streaming parser -> SHA-256 and
  AES-GCM segments in two workers -> O_DIRECT blob, fsynced -> rows); best and median;
- download: ``--download-repeat`` rounds (default 5), each one, interleaved, without and then
  with the client hashing what it receives (SHA-256, as a client checking the file would),
  with a lean client (``lean_get``: http.client reading into one reused buffer):
  ``/bench/brut?octets=N`` (zero bytes from a generator: the floor), the decrypting
  ``/fichiers/<id>/telecharger`` with the blob in the page cache ("warm", left there by the
  previous download) and with the blob evicted first (``posix_fadvise(DONTNEED)`` on that
  file only: "cold", read from the disk); median ratios against the floor of the same round.

It prints MiB/s, the ratios, the workers' peak RSS (VmHWM), which must stay flat between
sizes, and per GiB uploaded the CPU seconds of the server workers and of the client and the
workers' minor page faults, to see what saturates. The database is created with
``create_all`` (bench only).

    .venv/bin/python bench/upload_bench.py                 # 100 MiB and 1 GiB, SQLite
    .venv/bin/python bench/upload_bench.py --sizes 100     # MiB
    .venv/bin/python bench/upload_bench.py --backend postgresql --repeat 5
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server import add_server_arguments, describe_server, portal_env, server_settings, start_gunicorn  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("COFFRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench password " + secrets.token_hex(8)
MIB = 1 << 20
BOUNDARY = "coffre-bench-" + secrets.token_hex(8)


def prepare(
    url: str, instance: Path, secret: str, pepper: str, *, role: str = "contributeur", api_token: bool = False
) -> dict[str, int | str]:
    """Schema, an organisation, a member of ``role`` (with an API token when asked) and an armoire."""
    os.environ["COFFRE_INSTANCE_DIR"] = str(instance)
    from portal import create_app
    from portal.audit.context import Actor
    from portal.auth.models import User
    from portal.documents.services import armoires
    from portal.extensions import db
    from portal.organizations.models import Organization
    from portal.security.passwords import hash_password

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret, "PASSWORD_PEPPER": pepper, "SCHEDULER_ENABLED": False}
    )
    with app.app_context():
        db.create_all()
        org = Organization(name="Bench", require_2fa=False)
        db.session.add(org)
        db.session.flush()
        user = User(
            organization_id=org.id,
            email="bench@example.test",
            name="Bench",
            role=role,
            password_hash=hash_password(PASSWORD),
        )
        db.session.add(user)
        db.session.flush()
        actor = Actor(org.id, user.id)
        armoire = armoires.create_armoire(actor, "Bench")
        info: dict[str, int | str] = {"armoire": armoire.id, "email": user.email}
        if api_token:
            from portal.api.services import create_token

            info["token"] = create_token(user, actor, name="bench", days=1)[1]
        db.session.commit()
        db.engine.dispose()
    return info


def sign_in(client: httpx.Client, email: str) -> str:
    page = client.get("/auth/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/auth/login", data={"csrf_token": token, "email": email, "password": PASSWORD})
    assert response.status_code in (200, 204, 302, 303), response.status_code
    home = client.get("/armoires")
    assert home.status_code == 200, "sign-in failed"
    return re.search(r'"X-CSRFToken": "([^"]+)"', home.text).group(1)


def body_parts(token: str, size: int, block: bytes, name: str = "bench.bin") -> tuple[bytes, bytes, int]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + size + len(tail)


def post_body(
    client: httpx.Client, path: str, token: str, size: int, block: bytes, name: str = "bench.bin"
) -> tuple[float, httpx.Response]:
    head, tail, length = body_parts(token, size, block, name)

    def generate():
        yield head
        left = size
        while left > 0:
            yield block[: min(len(block), left)]
            left -= len(block)
        yield tail

    started = time.perf_counter()
    response = client.post(
        path,
        content=generate(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(length),
            "X-CSRFToken": token,
            "HX-Request": "true",
        },
    )
    return time.perf_counter() - started, response


def get_body(client: httpx.Client, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    received = 0
    with client.stream("GET", path) as response:
        assert response.status_code == 200, response.status_code
        for chunk in response.iter_raw(MIB):
            received += len(chunk)
    return time.perf_counter() - started, received


def lean_get(client: httpx.Client, path: str, *, hashing: bool = False) -> tuple[float, int]:
    """GET with http.client, ``readinto`` one reused 1 MiB buffer, optionally hashing it.

    Why not httpx: its response iterator costs ≈ 2.3 s of CPU per GiB on the bench machine
    (64 KiB reads joined into new chunks), so the client, not the server, set both the
    floor and the portal figure (≈ 440 MiB/s). This client costs ≈ 0.2 s/GiB.
    """
    url = client.base_url
    connection = http.client.HTTPConnection(url.host, url.port, timeout=900)
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    buffer = memoryview(bytearray(MIB))
    digest = hashlib.sha256() if hashing else None
    received = 0
    try:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookies})
        response = connection.getresponse()
        assert response.status == 200, response.status
        while count := response.readinto(buffer):
            received += count
            if digest is not None:
                digest.update(buffer[:count])
        return time.perf_counter() - started, received
    finally:
        connection.close()


def evict(path: Path) -> None:
    """Drop one file's pages from the page cache (clean pages only: the blob is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def blob_path(instance: Path) -> Path:
    """The only blob of this size in the bench instance (the last upload's)."""
    blobs = sorted((p for p in (instance / "storage").glob("??/??/*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    return blobs[-1]


DOWNLOAD_KINDS = ("floor", "warm", "cold")


def measure_downloads(
    portal: Portal, file_id: int, size: int, repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, ...]]]]:
    """Seconds per download and (server CPU, client CPU, server page faults) per download, by
    (hashing, kind); floor and portal runs interleaved."""
    blob = blob_path(portal.instance)
    times: dict[str, list[float]] = {f"{h}-{k}": [] for h in ("plain", "hash") for k in DOWNLOAD_KINDS}
    costs: dict[str, list[tuple[float, ...]]] = {name: [] for name in times}
    portal_path = f"/fichiers/{file_id}/telecharger"
    # Leaves the blob in the page cache for the first "warm" run, as a previous download would.
    get_body(portal.client, portal_path)
    for _ in range(repeat):
        for hashing in (False, True):
            label = "hash" if hashing else "plain"
            for kind in DOWNLOAD_KINDS:
                if kind == "cold":
                    evict(blob)
                path = f"/bench/brut?octets={size}" if kind == "floor" else portal_path
                (seconds, received), cpu = measured(
                    portal.server.pid, lambda path=path, hashing=hashing: lean_get(portal.client, path, hashing=hashing)
                )
                assert received == size
                times[f"{label}-{kind}"].append(seconds)
                costs[f"{label}-{kind}"].append(cpu)
    return times, costs


def cpu_seconds(master_pid: int) -> tuple[float, float, float]:
    """(CPU seconds of the gunicorn workers, of this client process, user + system; minor
    page faults of the workers), so far."""
    tick = os.sysconf("SC_CLK_TCK")
    server = faults = 0.0
    for pid in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        server += (int(fields[11]) + int(fields[12])) / tick
        faults += int(fields[7])
    times = os.times()
    return server, times.user + times.system, faults


def measured(master_pid: int, action):
    """Run ``action``; return its result and the (server CPU, client CPU, server page faults)
    it took."""
    before = cpu_seconds(master_pid)
    result = action()
    after = cpu_seconds(master_pid)
    return result, tuple(a - b for a, b in zip(after, before, strict=True))


def worker_peak_rss_kib(master_pid: int) -> list[int]:
    peaks = []
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))
    return peaks


@dataclass
class Portal:
    server: subprocess.Popen
    client: httpx.Client
    token: str
    info: dict[str, int | str]
    instance: Path


@contextlib.contextmanager
def running_portal(
    backend: str, max_upload_mib: int, *, workers: int = 2, worker_class: str = "sync", threads: int = 1
) -> Iterator[Portal]:
    """A throwaway portal (database, instance, gunicorn -w 2 unless told) with a signed-in contributor."""
    secret, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="coffre-bench-") as tmp:
        instance = Path(tmp)
        admin_engine = None
        if backend == "postgresql":
            name = f"coffre_bench_{os.getpid()}_{secrets.token_hex(3)}"
            admin_engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL)
        else:
            url = f"sqlite:///{instance / 'bench.db'}"
        info = prepare(url, instance, secret, pepper)
        env = portal_env(
            url, instance, secret, pepper, COFFRE_BENCH_ROUTES="1", COFFRE_MAX_UPLOAD_MB=str(max_upload_mib)
        )
        server, base = start_gunicorn(env, workers, worker_class=worker_class, threads=threads)
        try:
            client = httpx.Client(base_url=base, timeout=httpx.Timeout(900.0))
            token = sign_in(client, info["email"])
            yield Portal(server=server, client=client, token=token, info=info, instance=instance)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if admin_engine is not None:
                with admin_engine.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin_engine.dispose()


def upload_path(portal: Portal) -> str:
    return f"/armoires/{portal.info['armoire']}/televerser"


def run_size(
    backend: str, size_mib: int, repeat: int, download_repeat: int, server: dict[str, int | str] | None = None
) -> dict[str, float]:
    """``server``: gunicorn's workers, worker_class and threads (``running_portal``'s defaults otherwise)."""
    size = size_mib * MIB
    with running_portal(backend, size_mib + 16, **(server or {})) as portal:
        block = os.urandom(MIB)
        # Floor and upload alternate, so that a burst of load from other jobs on the
        # machine hits both; the best and the median of ``repeat`` pairs are reported.
        floor_runs, strict_runs, upload_runs = [], [], []
        for run in range(repeat):
            for path, runs in (("/bench/brut", floor_runs), ("/bench/brut-readinto", strict_runs)):
                (seconds, response), cpu = measured(
                    portal.server.pid, lambda path=path: post_body(portal.client, path, portal.token, size, block)
                )
                assert response.status_code == 200 and response.json()["bytes"] > size, response.text[:200]
                runs.append((seconds, cpu))
            (seconds, response), cpu = measured(
                portal.server.pid,
                lambda run=run: post_body(
                    portal.client, upload_path(portal), portal.token, size, block, f"bench-{run}.bin"
                ),
            )
            assert response.status_code == 201, response.text[:300]
            upload_runs.append((seconds, cpu))
        file_id = int(re.search(r"/fichiers/(\d+)", response.text).group(1))
        downloads, download_costs = measure_downloads(portal, file_id, size, download_repeat)
        peaks = worker_peak_rss_kib(portal.server.pid)
    mib = size / MIB
    ratios = sorted(floor[0] / upload[0] for floor, upload in zip(floor_runs, upload_runs, strict=True))
    return {
        "size_mib": size_mib,
        "raw_up": mib / min(seconds for seconds, _ in floor_runs),
        "portal_up": mib / min(seconds for seconds, _ in upload_runs),
        "raw_up_median": mib / statistics.median(seconds for seconds, _ in floor_runs),
        "strict_up": mib / min(seconds for seconds, _ in strict_runs),
        "strict_up_median": mib / statistics.median(seconds for seconds, _ in strict_runs),
        "strict_ratio_median": statistics.median(
            sorted(floor[0] / upload[0] for floor, upload in zip(strict_runs, upload_runs, strict=True))
        ),
        "portal_up_median": mib / statistics.median(seconds for seconds, _ in upload_runs),
        "ratio_median": statistics.median(ratios),
        # Download: median MiB/s of each kind, and the median of the per-round ratios.
        **{f"down_{name}": mib / statistics.median(runs) for name, runs in downloads.items()},
        **{
            f"down_ratio_{label}-{kind}": statistics.median(
                floor / run
                for floor, run in zip(downloads[f"{label}-floor"], downloads[f"{label}-{kind}"], strict=True)
            )
            for label in ("plain", "hash")
            for kind in ("warm", "cold")
        },
        "down_raw": {name: [round(mib / t) for t in runs] for name, runs in downloads.items()},
        "down_cpu": {
            name: median_cpu(list(zip(downloads[name], costs, strict=True)), mib)
            for name, costs in download_costs.items()
        },
        "peak_rss_mib": max(peaks) / 1024,
        # Median CPU seconds per GiB uploaded (server workers, client), to see what saturates.
        "raw_cpu": median_cpu(floor_runs, mib),
        "portal_cpu": median_cpu(upload_runs, mib),
    }


def median_cpu(runs: list[tuple[float, tuple[float, ...]]], mib: float) -> tuple[float, ...]:
    """Median per GiB of each measure (server CPU s, client CPU s, server page faults)."""
    return tuple(statistics.median(cpu[i] for _, cpu in runs) * 1024 / mib for i in (0, 1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="comma-separated sizes in MiB")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3, help="floor/upload pairs per size")
    parser.add_argument("--download-repeat", type=int, default=5, help="interleaved download rounds per size")
    add_server_arguments(parser, production=False)
    args = parser.parse_args()
    server = server_settings(args)
    print(
        f"backend={args.backend}, {describe_server(server)}, "
        "client httpx (uploads) and http.client (downloads) on the same 2-core machine"
    )
    print(f"upload: best of {args.repeat} alternating floor/upload pairs (median in brackets)")
    print(
        f"{'size':>8} {'upload MiB/s':>16} {'floor':>12} {'ratio':>12} {'peak RSS':>9}   "
        "upload CPU s/GiB server+client (floor); server page faults/GiB (floor)"
    )
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_size(args.backend, size, args.repeat, args.download_repeat, server)
        results.append(r)
        print(
            f"{size:>5} MiB {r['portal_up']:>5.0f} ({r['portal_up_median']:>4.0f}) {r['raw_up']:>5.0f} "
            f"({r['raw_up_median']:>4.0f}) {r['portal_up'] / r['raw_up']:>5.2f} ({r['ratio_median']:.2f}) "
            f"{r['peak_rss_mib']:>6.0f} MiB   {r['portal_cpu'][0]:.2f}+{r['portal_cpu'][1]:.2f} "
            f"({r['raw_cpu'][0]:.2f}+{r['raw_cpu'][1]:.2f}); {r['portal_cpu'][2]:.0f} ({r['raw_cpu'][2]:.0f})",
            flush=True,
        )
    print_downloads(results, args.download_repeat)
    print("strict floor (readinto a reused buffer), upload best (median):")
    for r in results:
        print(
            f"{r['size_mib']:>5} MiB floor {r['strict_up']:>5.0f} ({r['strict_up_median']:>4.0f})  ratio "
            f"{r['portal_up'] / r['strict_up']:.2f} ({r['strict_ratio_median']:.2f})"
        )


def print_downloads(results: list[dict], repeat: int) -> None:
    print(f"download, median of {repeat} interleaved rounds, MiB/s (ratio to the floor of the same round, median):")
    print(f"{'size':>8} {'client':>8} {'floor':>7} {'warm':>7} {'ratio':>6} {'cold':>7} {'ratio':>6}")
    for r in results:
        for label, name in (("plain", "no hash"), ("hash", "SHA-256")):
            print(
                f"{r['size_mib']:>5} MiB {name:>8} {r[f'down_{label}-floor']:>7.0f} {r[f'down_{label}-warm']:>7.0f} "
                f"{r[f'down_ratio_{label}-warm']:>6.2f} {r[f'down_{label}-cold']:>7.0f} "
                f"{r[f'down_ratio_{label}-cold']:>6.2f}"
            )
    print("download, median per GiB: server CPU s + client CPU s; server page faults")
    for r in results:
        for name, (server, client, faults) in r["down_cpu"].items():
            print(f"{r['size_mib']:>5} MiB {name:>12}: {server:.2f} + {client:.2f}; {faults:.0f}")
    print("raw download figures, MiB/s per round:")
    for r in results:
        for name, runs in r["down_raw"].items():
            print(f"{r['size_mib']:>5} MiB {name:>12}: {runs}")


if __name__ == "__main__":
    main()
