"""The workloads' domain services: what a product (or `jobctl`) calls to add proxies, social
accounts, posts, Telegram connections and proactive messages, and the fan-out queries the
recurring jobs run.

Every function takes the caller's SQLAlchemy session, so business rows and the jobs they need
commit together or not at all (jobs are only ever created through `shared.enqueue`). Secrets
are encrypted here, on the way in (`shared.crypto`), and never returned in clear.
"""
