"""Who may reach the server: loopback detection, the warning for an exposed server without a key, and the key read
from the environment (the ``Authorization`` check itself is :class:`seqbert.serving.middleware._ApiKey`)."""

import ipaddress
import os


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the server to this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when ``host`` is reachable from other machines and no API key protects it."""
    if api_key or is_loopback(host):
        return None
    return (
        f"seqbert serve is listening on {host}, which other machines can reach, WITHOUT an API key: anyone who can "
        "connect can query the model. Set a key with --api-key-env NAME (the variable NAME holds it), or bind "
        "127.0.0.1 behind a proxy that authenticates."
    )


def _api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key:
        raise ValueError(f"--api-key-env {name}: the environment variable {name} is not set or empty.")
    return key


__all__ = ["exposure_warning", "is_loopback"]
