"""One scheduler process for tests/test_scheduler_once.py: a 1-second job that appends a
line per run to a file, every other job removed, running for a few seconds."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from portal import scheduler
from tests.conftest import make_test_app


def main(database_url: str, instance: str, out: str, seconds: float) -> None:
    app = make_test_app(database_url, Path(instance), TESTING=False, SCHEDULER_ENABLED=False)

    def counted_job() -> None:
        with open(out, "a") as handle:
            handle.write(f"{os.getpid()} {time.time():.3f}\n")

    scheduler.JOBS[:] = [scheduler.JobSpec(counted_job, "interval", {"seconds": 1})]
    app.config["SCHEDULER_ENABLED"] = True
    scheduler.init_app(app)
    time.sleep(seconds)
    app.extensions["scheduler"].shutdown(wait=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
