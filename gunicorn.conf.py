"""gunicorn settings, read from the working directory (``gunicorn wsgi:app`` run from the checkout).

Command-line options override them (the benchmarks set their own workers and worker class).
Figures behind these choices: docs/performance.md, "Sustained mixed load".
"""

import os

# Threaded workers keep long uploads, downloads and journal exports alive (a sync worker is
# killed after ``timeout`` seconds, whatever it is doing) and keep connections open.
worker_class = "gthread"
threads = 4
# Several processes, not one with many threads: the GIL serialises a single process, and on
# SQLite an upload's final transaction waited behind the other threads' work while it held the
# write lock (issue 18: one worker of 8 threads, uploads p95 0.3-1.2 s; two of 4, 0.16 s).
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
timeout = 120

# Keep idle connections longer than the clients and proxies in front keep theirs (httpx 5 s,
# nginx's upstream keepalive_timeout 60 s), so that the client always closes first. With
# gunicorn's default of 2 s the worker closed connections the client still held as reusable:
# a request sent as the worker closed its idle socket was cut (ReadError, RemoteProtocolError;
# issue 18, 1-3 per 5-minute load run, nothing in the server log because no request was read).
keepalive = 75
