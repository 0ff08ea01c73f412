"""Sustained mixed load: a busy organisation's traffic against a real gunicorn, for a chosen time.

Eight clients (by default) pick requests at random in the proportions of a busy
organisation: 40% API listings (`GET /api/v1/armoires/<id>/fichiers`, bearer token), 20%
small uploads of 4–64 KiB (`POST /api/v1/fichiers`), 20% downloads
(`GET /api/v1/fichiers/<id>/contenu`), 10% the armoire page and 10% `/journal` (browser
session). Rate limits are off (`COFFRE_RATELIMIT=0`) so that the server, not the limiter,
is measured. Every acknowledged upload is read back and compared at the end.

It prints requests/s, p50/p95/p99 per kind, every status count, transport errors
(connection cut, protocol error) and the workers' RSS before and after. Exit status 1 when
any 5xx or transport error was seen, so that a script can use it as a gate.

    .venv/bin/python bench/load_bench.py --duration 600                       # SQLite, gthread 2x4
    .venv/bin/python bench/load_bench.py --duration 600 --backend postgresql
    .venv/bin/python bench/load_bench.py --workers 1 --threads 8              # issue 18's setup
    .venv/bin/python bench/load_bench.py --worker-class sync --workers 1      # its comparison point

The default is gunicorn.conf.py's worker model on a 2-core machine (2 gthread workers of 4
threads); gunicorn's keep-alive comes from that file too.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import re
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server import portal_env, running_database, start_gunicorn  # noqa: E402
from bench.upload_bench import prepare, sign_in  # noqa: E402

MIX = (("api_list", 40), ("upload", 20), ("download", 20), ("armoire_page", 10), ("journal", 10))
SEED_FILES = 50


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.transport: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.uploaded: dict[int, str] = {}  # file id -> sha256 acknowledged

    def add(self, kind: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[kind][status] += 1

    def cut(self, kind: str, error: Exception) -> None:
        with self.lock:
            self.transport[kind][type(error).__name__] += 1


def worker_rss_kib(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) for pid in children]


def run_client(base: str, info: dict, cookies: httpx.Cookies, files: list[int], rec: Recorder, until: float) -> None:
    rng = random.Random(secrets.randbits(64))
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    auth = {"Authorization": f"Bearer {info['token']}"}
    armoire = info["armoire"]
    with (
        httpx.Client(base_url=base, headers=auth, timeout=60) as api,
        httpx.Client(base_url=base, cookies=cookies, timeout=60) as browser,
    ):
        while time.monotonic() < until:
            kind = rng.choice(kinds)
            started = time.perf_counter()
            try:
                if kind == "api_list":
                    response = api.get(f"/api/v1/armoires/{armoire}/fichiers", params={"page": rng.randint(1, 3)})
                elif kind == "upload":
                    body = os.urandom(rng.randint(4, 64) * 1024)
                    response = api.post(
                        "/api/v1/fichiers",
                        data={"armoire_id": str(armoire)},
                        files={"file": (f"charge-{secrets.token_hex(4)}.bin", body, "application/octet-stream")},
                    )
                    if response.status_code == 201:
                        file_id = response.json()["file_id"]
                        with rec.lock:
                            rec.uploaded[file_id] = hashlib.sha256(body).hexdigest()
                            files.append(file_id)
                elif kind == "download":
                    with rec.lock:
                        file_id = rng.choice(files)
                    response = api.get(f"/api/v1/fichiers/{file_id}/contenu")
                elif kind == "armoire_page":
                    response = browser.get(f"/armoires/{armoire}")
                else:
                    response = browser.get("/journal")
            except httpx.TransportError as error:
                rec.cut(kind, error)
                continue
            rec.add(kind, time.perf_counter() - started, response.status_code)


def seed(base: str, info: dict, rec: Recorder) -> list[int]:
    files = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {info['token']}"}, timeout=60) as api:
        for number in range(SEED_FILES):
            body = os.urandom(16 * 1024)
            response = api.post(
                "/api/v1/fichiers",
                data={"armoire_id": str(info["armoire"])},
                files={"file": (f"seed-{number}.bin", body, "application/octet-stream")},
            )
            assert response.status_code == 201, response.text[:300]
            file_id = response.json()["file_id"]
            files.append(file_id)
            rec.uploaded[file_id] = hashlib.sha256(body).hexdigest()
    return files


def read_back(base: str, info: dict, rec: Recorder) -> list[int]:
    """Every acknowledged upload, downloaded and hashed: the ids whose content differs."""
    bad = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {info['token']}"}, timeout=60) as api:
        for file_id, digest in rec.uploaded.items():
            response = api.get(f"/api/v1/fichiers/{file_id}/contenu")
            if response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != digest:
                bad.append(file_id)
    return bad


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--worker-class", choices=("gthread", "sync"), default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    with running_database(args.backend) as (url, instance, secret, pepper):
        info = prepare(url, instance, secret, pepper, role="admin", api_token=True)
        env = portal_env(url, instance, secret, pepper)
        server, base = start_gunicorn(
            env, workers=args.workers, worker_class=args.worker_class, threads=args.threads, log=instance / "server.log"
        )
        try:
            with httpx.Client(base_url=base, timeout=60) as login:
                sign_in(login, str(info["email"]))
                cookies = login.cookies
            rec = Recorder()
            files = seed(base, info, rec)
            rss_before = worker_rss_kib(server.pid)
            started = time.monotonic()
            until = started + args.duration
            clients = [
                threading.Thread(target=run_client, args=(base, info, cookies, files, rec, until))
                for _ in range(args.clients)
            ]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            elapsed = time.monotonic() - started
            rss_after = worker_rss_kib(server.pid)
            bad = read_back(base, info, rec)
        finally:
            server.terminate()
            server.wait(timeout=30)
        log_lines = (instance / "server.log").read_text(errors="replace").splitlines()
        tracebacks = [line for line in log_lines if "Traceback" in line or "Error" in line]

    total = sum(len(values) for values in rec.latencies.values())
    print(
        f"backend={args.backend}, gunicorn {args.workers}x {args.worker_class}"
        f"{f' {args.threads} threads' if args.worker_class == 'gthread' else ''}, {args.clients} clients, "
        f"{elapsed:.0f} s: {total} requests, {total / elapsed:.1f} requests/s"
    )
    print(f"{'kind':<14}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses / transport errors")
    server_errors = transport_errors = 0
    for kind, _ in MIX:
        values = rec.latencies.get(kind, [])
        statuses = dict(sorted(rec.statuses[kind].items()))
        cuts = dict(rec.transport[kind])
        server_errors += sum(count for status, count in statuses.items() if status >= 500)
        transport_errors += sum(cuts.values())
        if values:
            p50, p95, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.95, 0.99))
            print(f"{kind:<14}{len(values):>7}{p50:>9.0f}{p95:>9.0f}{p99:>9.0f}  {statuses} {cuts or ''}")
        else:
            print(f"{kind:<14}{0:>7}  {cuts}")
    print(
        f"worker RSS: {statistics.mean(rss_before) / 1024:.0f} MiB before, {statistics.mean(rss_after) / 1024:.0f} MiB "
        f"after; uploads read back: {len(rec.uploaded)}, differing: {len(bad)}; 5xx: {server_errors}, "
        f"transport errors: {transport_errors}; server log error lines: {len(tracebacks)}"
    )
    for line in tracebacks[:5]:
        print("  log:", line[:200])
    return 1 if server_errors or transport_errors or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
