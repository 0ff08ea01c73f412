"""Raw-floor routes for bench/upload_bench.py: the same bytes through the same stack, no crypto.

Registered only when ``BENCH_ROUTES`` is on (env COFFRE_BENCH_ROUTES=1); never in production.
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, request

from portal.security.permissions import Permission, requires

bp = Blueprint("documents_bench", __name__)
CHUNK = 1 << 20


@bp.route("/bench/brut", methods=["POST"])
@requires(Permission.DOCUMENT_WRITE)
def raw_upload():
    """Read and discard the body in 1 MiB chunks: the upload floor."""
    total = 0
    while chunk := request.stream.read(CHUNK):
        total += len(chunk)
    return {"bytes": total}


@bp.route("/bench/brut")
@requires(Permission.DOCUMENT_DOWNLOAD)
def raw_download():
    """Stream ``octets`` zero bytes in 1 MiB chunks: the download floor."""
    size = max(0, request.args.get("octets", 0, type=int))
    block = bytes(CHUNK)

    def generate():
        left = size
        while left > 0:
            yield block[: min(CHUNK, left)]
            left -= CHUNK

    response = Response(generate(), mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(size)
    return response


def init_app(app: Flask) -> None:
    if app.config.get("BENCH_ROUTES") or os.environ.get("COFFRE_BENCH_ROUTES") == "1":
        from portal.extensions import csrf

        csrf.exempt(bp)
        app.register_blueprint(bp)


def create_bench_app() -> Flask:
    """gunicorn factory used by the benchmark until the app factory registers the routes itself."""
    from portal import create_app

    app = create_app()
    if "documents_bench.raw_upload" not in app.view_functions:
        init_app(app)
    return app
