"""Handlers bound to declared job types; importing this package binds them all."""

from worker.handlers import platform  # noqa: F401
from worker.handlers import messages, posts, proxies  # noqa: F401  (the three workloads)
