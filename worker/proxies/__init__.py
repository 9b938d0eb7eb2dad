"""Proxy health checks: the check itself (checker), its handshakes, and the score policy."""
