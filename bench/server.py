"""A gunicorn server for the benchmarks: the portal as it runs in production, on loopback."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import runpy
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("COFFRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def portal_env(url: str, instance: Path, secret: str, pepper: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked portal: its database, instance and secrets, with the
    scheduler and rate limits off (one endpoint is timed many times)."""
    return dict(
        os.environ,
        DATABASE_URL=url,
        COFFRE_INSTANCE_DIR=str(instance),
        SECRET_KEY=secret,
        COFFRE_PASSWORD_PEPPER=pepper,
        COFFRE_SCHEDULER="0",
        COFFRE_RATELIMIT="0",
        **extra,
    )


def add_server_arguments(parser: argparse.ArgumentParser, *, production: bool) -> None:
    """``--workers``, ``--worker-class``, ``--threads``: by default gunicorn.conf.py's settings
    (``production``) or the historical ``-w 2`` sync of a bench's earlier figures."""
    if production:
        settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
        workers, worker_class, threads = settings["workers"], settings["worker_class"], settings["threads"]
    else:
        workers, worker_class, threads = 2, "sync", 4
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default=worker_class)
    parser.add_argument("--threads", type=int, default=threads, help="per worker, gthread only")


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed server arguments as ``running_portal``'s keywords (one thread unless gthread)."""
    threads = args.threads if args.worker_class == "gthread" else 1
    return {"workers": args.workers, "worker_class": args.worker_class, "threads": threads}


def describe_server(settings: dict[str, Any]) -> str:
    return f"gunicorn -w {settings['workers']} ({settings['worker_class']}, {settings['threads']} thread(s))"


def start_gunicorn(
    env: dict[str, str],
    workers: int = 2,
    *,
    worker_class: str = "sync",
    threads: int = 1,
    log: Path | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``gunicorn wsgi:app`` with ``env`` and return it, with its base URL, once it answers.

    ``log``: where the server's stderr goes (tracebacks), instead of nowhere."""
    port = free_port()
    # --threads always: gunicorn.conf.py sets 4, and a sync worker with threads > 1 becomes gthread.
    threads = threads if worker_class == "gthread" else 1
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", worker_class, "--timeout", "900"]
    command += ["--threads", str(threads)]
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    server = subprocess.Popen(
        [*command, "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, base


@contextlib.contextmanager
def running_database(backend: str) -> Iterator[tuple[str, Path, str, str]]:
    """A throwaway database and instance directory: (URL, instance, secret key, pepper)."""
    secret, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="coffre-bench-") as tmp:
        instance = Path(tmp)
        if backend != "postgresql":
            yield f"sqlite:///{instance / 'bench.db'}", instance, secret, pepper
            return
        name = f"coffre_bench_{os.getpid()}_{secrets.token_hex(3)}"
        admin_engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL), instance, secret, pepper
        finally:
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin_engine.dispose()
