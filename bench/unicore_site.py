"""A UNICORE site for part 4, in its own process: ``python -m bench.unicore_site ROOT URL_FILE``.

It is the test suite's UNICORE gateway (``tests.support.unicore_gateway``), which stands in
for UNICORE/X: the same REST API and file endpoints pyunicore talks to, served by uvicorn
from job folders under ROOT. Its file serving speed is not a real site's. It runs apart
from the bench process so that serving and fetching do not share one interpreter.

One user, named by ``BENCH_UNICORE_USER`` / ``BENCH_UNICORE_PASSWORD``. Once it serves,
its REST base URL is written to URL_FILE. It stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.support.unicore_gateway import UnicoreGateway

SITE = "BENCH-SITE"


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the ``with``: the gateway stops cleanly


def main() -> None:
    root, url_file = Path(sys.argv[1]), Path(sys.argv[2])
    users = {os.environ["BENCH_UNICORE_USER"]: os.environ["BENCH_UNICORE_PASSWORD"]}
    signal.signal(signal.SIGTERM, _exit)
    with UnicoreGateway(users, root, site=SITE) as gateway:
        partial = url_file.with_name(url_file.name + ".part")
        partial.write_text(gateway.base_url)
        partial.replace(url_file)
        print("serving", gateway.base_url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
