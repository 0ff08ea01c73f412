"""Small-file throughput: files stored per second through the running portal (gunicorn).

Uploads N files of a few KiB each (encrypted, versioned, journalled: one request and one
commit per file, as a person or the desktop app sends them) one after the other and with
4 clients at once, and compares with the same requests sent to the raw floor route
(`/bench/brut`, which reads and discards the body). The peer to beat is Mayan EDMS at
3.4 small files/s on this machine (the brief's figure, not measured here): the target is 10x.

Run: .venv/bin/python bench/small_files_bench.py [--files 300] [--size-kib 8] [--backend sqlite|postgresql]
     [--rounds 3] [--workers N --worker-class sync|gthread --threads N]  (default: gunicorn.conf.py's)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import add_server_arguments, describe_server, server_settings
from bench.upload_bench import post_body, running_portal, upload_path

PEER_FILES_PER_SECOND = 3.4  # Mayan EDMS, small files, measured on this machine (brief)
TARGET_RATIO = 10


def send(portal, path: str, count: int, size: int, clients: int, expected: int, prefix: str = "petit") -> float:
    """Files per second for ``count`` uploads spread over ``clients`` threads (names are new:
    a taken name would answer the conflict page)."""
    block = os.urandom(size)
    per_client = count // clients
    errors: list[str] = []

    def worker(index: int) -> None:
        import httpx

        with httpx.Client(base_url=str(portal.client.base_url), cookies=portal.client.cookies, timeout=60) as client:
            for number in range(per_client):
                _, response = post_body(client, path, portal.token, size, block, f"{prefix}-{index}-{number}.txt")
                if response.status_code != expected:
                    errors.append(f"{response.status_code} {response.text[:120]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return per_client * clients / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--size-kib", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    # By default the portal runs as in production (gunicorn.conf.py); ``--workers 2
    # --worker-class sync`` is the setting of the figures before 2026-12-06.
    add_server_arguments(parser, production=True)
    parser.add_argument("--rounds", type=int, default=3, help="floor and portal runs alternated, medians compared")
    args = parser.parse_args()
    size = args.size_kib * 1024
    server = server_settings(args)
    print(f"backend={args.backend}, {describe_server(server)}, {args.files} files of {args.size_kib} KiB per run")
    with running_portal(args.backend, 16, **server) as portal:
        for clients in (1, 4):
            # Floor and portal alternate, so that a burst of load from other jobs on this shared
            # machine hits both; the medians are compared.
            floors, stored = [], []
            for round_number in range(args.rounds):
                floors.append(send(portal, "/bench/brut", args.files, size, clients, 200))
                prefix = f"petit-{clients}-{round_number}"
                stored.append(send(portal, upload_path(portal), args.files, size, clients, 201, prefix))
            floor, files = statistics.median(floors), statistics.median(stored)
            print(
                f"{clients} client(s): portal {files:7.1f} files/s | floor {floor:7.1f} req/s | "
                f"ratio to floor {files / floor:.2f} | vs peer {files / PEER_FILES_PER_SECOND:.1f}x "
                f"(target {TARGET_RATIO}x) | rounds: portal {' '.join(f'{v:.0f}' for v in stored)}, "
                f"floor {' '.join(f'{v:.0f}' for v in floors)}"
            )


if __name__ == "__main__":
    main()
