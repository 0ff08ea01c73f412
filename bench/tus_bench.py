"""Resumable (tus) uploads against the one-request multipart upload, on a gunicorn portal.

    python bench/tus_bench.py [--backend sqlite|postgresql] [--size-mib 128] [--repeat 3]

Prints the median throughput of: the multipart web upload (baseline), one tus PATCH with the
whole file, and tus in 8 MiB parts (what upload_queue.js and the desktop uploader send), and
each one's ratio to the baseline, all measured in this run against the same server.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.upload_bench import MIB, post_body, running_portal, upload_path


def tus_upload(portal, data: bytes, part: int | None) -> float:
    client = portal.client
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": f"tus-{time.time_ns()}.bin", "armoire_id": str(portal.info["armoire"])}.items()
    )
    headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": portal.token}
    started = time.perf_counter()
    created = client.post("/envois/", headers=headers | {"Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    offset = 0
    step = part or len(data)
    while True:
        response = client.patch(
            location,
            content=data[offset : offset + step],
            headers=headers | {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        )
        assert response.status_code == 204, response.text
        offset = int(response.headers["Upload-Offset"])
        if "Coffre-File-Id" in response.headers:
            return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    # Nine uploads of the file: past the 1 GiB trial quota at the default size.
    os.environ["COFFRE_TRIAL_STORAGE_MB"] = "0"
    data = os.urandom(size)
    block = data[: 4 * MIB]
    with running_portal(args.backend, args.size_mib + 8) as portal:
        timings: dict[str, list[float]] = {"multipart": [], "tus, one PATCH": [], "tus, 8 MiB parts": []}
        for _ in range(args.repeat):
            seconds, response = post_body(portal.client, upload_path(portal), portal.token, size, block)
            assert response.status_code in (200, 201), response.status_code
            timings["multipart"].append(seconds)
            timings["tus, one PATCH"].append(tus_upload(portal, data, None))
            timings["tus, 8 MiB parts"].append(tus_upload(portal, data, 8 * MIB))
    baseline = statistics.median(timings["multipart"])
    print(f"{args.backend}, {args.size_mib} MiB, median of {args.repeat}:")
    for name, runs in timings.items():
        median = statistics.median(runs)
        print(f"  {name:18s} {args.size_mib / median:7.1f} MiB/s  ratio to multipart {baseline / median:5.2f}")


if __name__ == "__main__":
    main()
