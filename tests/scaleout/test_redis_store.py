"""The shared stores in Redis, and the seam that picks them: round trips against a real redis-server."""

from __future__ import annotations

import json

import pytest
import redis

from components import server_store
from components.scaleout.redis_store import STORE_TTL_S, RedisStore, StoreUnavailable, redis_store
from tests.scaleout.conftest import RedisServer, redis_binary

BTC = "btc_demo.csv"


def test_values_come_back_as_the_type_they_were_stored_as(scaleout_env):
    store = redis_store("results")
    text = "é ünïcode ✓ " + "x" * 1000
    data = bytes(range(256)) * 40  # every byte value, a tag byte included
    store.set("text", text)
    store.set("data", data)
    assert store.get("text") == text and isinstance(store.get("text"), str)
    assert store.get("data") == data and isinstance(store.get("data"), bytes)
    assert "text" in store and "missing" not in store
    assert store.get("missing") is None and store.get("missing", "d") == "d"
    with pytest.raises(TypeError, match="str or bytes"):
        store.set("n", 3)  # type: ignore[arg-type]


def test_stores_are_namespaced_and_expire(scaleout_env):
    raw = redis.Redis.from_url(scaleout_env.url)
    redis_store("snapshots").set("k", "in snapshots")
    redis_store("backtests").set("k", "in backtests")
    assert redis_store("snapshots").get("k") == "in snapshots"
    assert redis_store("backtests").get("k") == "in backtests"
    assert raw.get("smilescope:snapshots:k") == b"sin snapshots"
    assert 0 < raw.ttl("smilescope:backtests:k") <= STORE_TTL_S
    assert redis_store("backtests").delete("k") and "k" not in redis_store("backtests")
    raw.close()


def test_the_seam_picks_redis_only_when_the_url_is_set(scaleout_env, monkeypatch, tmp_path):
    assert isinstance(server_store.store("results"), RedisStore)
    with pytest.raises(KeyError):
        server_store.store("nope")
    monkeypatch.delenv("SMILESCOPE_REDIS_URL")
    assert not isinstance(server_store.store("results"), RedisStore)


def test_a_fit_is_memoised_in_redis_and_a_snapshot_readable_from_its_bytes(scaleout_env):
    """What a worker on another machine relies on: the snapshot's bytes and the fit are in Redis."""
    snapshot, key = server_store.data_key(BTC)
    raw = redis.Redis.from_url(scaleout_env.url)
    assert raw.exists(f"smilescope:snapshots:bytes:{snapshot.content_hash}")
    server_store.snapshot_by_hash.cache_clear()
    again = server_store.snapshot_by_hash(snapshot.content_hash)  # parsed from the bytes stored in Redis
    assert again.content_hash == snapshot.content_hash and len(again.quotes) == len(snapshot.quotes)

    settings = server_store.CalibrationSettings(max_evals=200)
    fit = server_store.cached_fit(snapshot, settings)
    stored = raw.get(f"smilescope:results:{server_store.fit_key(snapshot, settings)}")
    assert stored is not None and json.loads(stored[1:]) == fit
    assert server_store.cached_fit(snapshot, settings) == fit  # served from Redis: the same run, same timing
    raw.close()


def test_an_outage_is_a_clear_oserror_and_the_store_recovers(tmp_path, monkeypatch):
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        from components.scaleout.redis_store import client

        store = RedisStore("results", client(server.url))
        store.set("a", "1")
        server.stop()
        with pytest.raises(StoreUnavailable, match="'results' \\(Redis\\) is unreachable") as info:
            store.get("a")
        assert isinstance(info.value, OSError)  # handled wherever a failing disk cache would be
        server.start()  # same port, empty
        assert store.get("a") is None
        store.set("a", "2")
        assert store.get("a") == "2"
    finally:
        server.stop()
