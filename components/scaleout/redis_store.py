"""The shared key-value stores in Redis (scale-out mode): what :func:`components.server_store.store` returns there.

Every web process and worker, on any machine, sees the same stores. Keys are namespaced
``smilescope:<store>:<key>``; values are ``str`` or ``bytes`` and come back as the type they were stored as (a
one-byte type tag precedes the payload). Entries expire :data:`STORE_TTL_S` after they were last written, so a
Redis configured with ``maxmemory-policy volatile-lru`` evicts old entries first and never Celery's queues (which
have no expiry).

While Redis is unreachable every operation raises :class:`StoreUnavailable`, an :class:`OSError` like a failing
disk under the diskcache stores, so the callers' existing handling of storage errors applies; the client
reconnects by itself when Redis is back.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import redis

from components.scaleout import redis_url
from components.scaleout.celery_app import REDIS_TIMEOUT_S

#: Seconds an entry lives after its last write: 30 days.
STORE_TTL_S = 30 * 24 * 3600
#: Key prefix of everything Smilescope itself writes in Redis (Celery's keys have their own).
PREFIX = "smilescope"
_STR, _BYTES = b"s", b"b"


@functools.lru_cache(maxsize=4)
def client(url: str | None = None) -> redis.Redis:
    """One Redis client (a connection pool, reconnecting by itself after an outage) per URL and process.

    ``url`` defaults to ``SMILESCOPE_REDIS_URL``; operations time out after :data:`REDIS_TIMEOUT_S` seconds and
    raise :class:`redis.exceptions.ConnectionError` or :class:`redis.exceptions.TimeoutError` while Redis is down.
    """
    url = url or redis_url()
    if url is None:
        raise RuntimeError("SMILESCOPE_REDIS_URL is not set: the scale-out mode is off")
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                                health_check_interval=30)


class StoreUnavailable(ConnectionError):
    """Redis (the shared stores) is unreachable."""


@contextlib.contextmanager
def _reporting_outages(name: str) -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError) as exc:
        raise StoreUnavailable(f"the shared store {name!r} (Redis) is unreachable: {exc}") from exc


def _encode(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return _BYTES + value
    if isinstance(value, str):
        return _STR + value.encode("utf-8")
    raise TypeError(f"the shared stores hold str or bytes, not {type(value).__name__}")


def _decode(raw: bytes | None) -> str | bytes | None:
    if raw is None:
        return None
    tag, payload = raw[:1], raw[1:]
    if tag == _STR:
        return payload.decode("utf-8")
    if tag == _BYTES:
        return payload
    raise ValueError(f"not a Smilescope store entry (type tag {tag!r})")


class RedisStore:
    """A named store in Redis with the interface of the diskcache stores it replaces: ``get(key)``,
    ``set(key, value)`` and ``key in store``."""

    def __init__(self, name: str, redis_client: redis.Redis) -> None:
        self.name = name
        self._redis = redis_client

    def _key(self, key: str) -> str:
        return f"{PREFIX}:{self.name}:{key}"

    def get(self, key: str, default: str | bytes | None = None) -> str | bytes | None:
        """The value stored under ``key`` (``default`` when there is none)."""
        with _reporting_outages(self.name):
            value = _decode(self._redis.get(self._key(key)))
        return default if value is None else value

    def set(self, key: str, value: str | bytes) -> bool:
        """Store ``value`` (``str`` or ``bytes``) under ``key`` for :data:`STORE_TTL_S` seconds."""
        data = _encode(value)
        with _reporting_outages(self.name):
            return bool(self._redis.set(self._key(key), data, ex=STORE_TTL_S))

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        with _reporting_outages(self.name):
            return bool(self._redis.delete(self._key(key)))

    def __contains__(self, key: str) -> bool:
        with _reporting_outages(self.name):
            return bool(self._redis.exists(self._key(key)))

    def __repr__(self) -> str:
        return f"RedisStore({self.name!r})"


def redis_store(name: str) -> RedisStore:
    """The store ``name`` on the deployment's Redis."""
    return RedisStore(name, client())
