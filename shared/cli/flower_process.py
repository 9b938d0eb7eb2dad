"""The Flower process: `celery ... flower` as Celery runs it, with one change. Flower serves its
`/metrics` without authentication, even when its pages need basic auth; task names, worker
names and counts are not for everyone, so here `/metrics` asks for the same credentials as the
pages. `/healthcheck` stays open: it says only "OK", and probes need it.

`jobctl flower` starts this module (`python -m shared.cli.flower_process -A worker.app:app flower ...`).
"""

from __future__ import annotations

import sys

from tornado.web import authenticated


def protect_metrics() -> None:
    from flower.views import monitor

    if not getattr(monitor.Metrics.get, "_jobs_protected", False):
        protected = authenticated(monitor.Metrics.get)
        protected._jobs_protected = True  # type: ignore[attr-defined]
        monitor.Metrics.get = protected  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    protect_metrics()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *argv]
    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
