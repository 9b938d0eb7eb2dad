#!/bin/sh
# Runs under tini before every service command of the image.
set -eu

# prometheus_client's multiprocess mode keeps one file per process in this directory; files left
# by processes of an earlier run (a restarted container keeps its emptyDir) would be summed into
# the new run's metrics, so the directory starts empty.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi

exec "$@"
