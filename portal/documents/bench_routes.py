"""Raw-floor routes for bench/upload_bench.py: the same bytes through the same stack, no crypto.

Registered only when ``BENCH_ROUTES`` is on (env COFFRE_BENCH_ROUTES=1); never in production.
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, current_app, request

from portal.documents.upload import FORM_OVERHEAD
from portal.security.permissions import Permission, requires
from portal.web.bodies import streams_body

bp = Blueprint("documents_bench", __name__)
CHUNK = 1 << 20


@bp.route("/bench/brut", methods=["POST"])
@streams_body
@requires(Permission.DOCUMENT_WRITE)
def raw_upload():
    """Read and discard the body in 1 MiB chunks: the upload floor."""
    # The same body limit as a real upload (documents/upload.py lifts the app-wide 1 MiB).
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"] + FORM_OVERHEAD
    total = 0
    while chunk := request.stream.read(CHUNK):
        total += len(chunk)
    return {"bytes": total}


@bp.route("/bench/brut-readinto", methods=["POST"])
@streams_body
@requires(Permission.DOCUMENT_WRITE)
def raw_upload_readinto():
    """A stricter floor: ``readinto`` one reused 1 MiB buffer (``read`` allocates a new bytes
    object per call, which costs page faults the upload's parser no longer pays)."""
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"] + FORM_OVERHEAD
    buffer = memoryview(bytearray(CHUNK))
    total = 0
    while count := request.stream.readinto(buffer):
        total += count
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
