"""API keys: shown once, stored as a peppered hash, scoped, revocable, cached briefly."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from records import Records

from workbench import events, keys
from workbench.errors import Conflict, InputError
from workbench.schema import api_keys


@pytest.fixture
def eng(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "test-pepper")
    return events.engine(f"sqlite:///{tmp_path / 'events.db'}")


def test_a_key_is_stored_only_as_its_peppered_hash_and_verifies(eng, monkeypatch):
    key = keys.create(eng, "svc", ["predict", "feedback"], rate_limit="10/second")
    assert key.startswith("wb_") and len(key) > 50 and keys.key_id(key)
    with eng.connect() as conn:
        row = conn.execute(sa.select(api_keys)).one()
    assert key not in str(tuple(row)) and key.split("_", 2)[2] not in str(tuple(row))
    assert row.hash == keys.digest(key) and len(row.hash) == 64
    found = keys.verify(eng, key)
    assert found == keys.Principal("key:svc", frozenset({"predict", "feedback"}), "10/second")
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "another-pepper")  # a pepper change
    assert keys.verify(eng, key) is None  # invalidates every key


def test_wrong_malformed_and_revoked_keys_are_refused(eng):
    key = keys.create(eng, "svc", ["predict"])
    public = keys.key_id(key)
    assert keys.verify(eng, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.verify(eng, f"wb_{public}_{'x' * 43}") is None  # right id, wrong secret
    for bad in ("", "wb_", "nope", "wb_zz_secret", key + " "):
        assert keys.verify(eng, bad) is None
    assert time.time() - 5 <= keys.revoke(eng, "svc")["revoked"] <= time.time()  # just now
    assert keys.verify(eng, key) is None
    first = keys.list_keys(eng)[0]["revoked"]
    assert keys.revoke(eng, "svc")["revoked"] == first  # again: a no-op
    with pytest.raises(keys.KeyNotFound, match="no API key named 'other'"):
        keys.revoke(eng, "other")


def test_names_scopes_and_rate_limits_are_checked(eng):
    with pytest.raises(InputError, match="unknown scope"):
        keys.create(eng, "a", ["predict", "root"])
    with pytest.raises(InputError, match="no scope"):
        keys.create(eng, "a", [])
    with pytest.raises(InputError, match="invalid rate limit"):
        keys.create(eng, "a", ["predict"], rate_limit="fast")
    with pytest.raises(InputError, match="invalid key name"):
        keys.create(eng, "a b", ["predict"])
    keys.create(eng, "a", ["admin", "predict", "admin"])
    assert keys.list_keys(eng)[0]["scopes"] == ["predict", "admin"]
    with pytest.raises(Conflict, match="exists already"):
        keys.create(eng, "a", ["predict"])
    assert keys.check_rate_limit("100/minute;5000/hour") == "100/minute;5000/hour"
    assert keys.check_rate_limit(" ") is None


def test_list_shows_no_secret_and_no_hash(eng):
    key = keys.create(eng, "svc", ["batch"])
    listed = keys.list_keys(eng)
    assert [k["name"] for k in listed] == ["svc"] and "hash" not in listed[0]
    assert key not in str(listed) and keys.digest(key) not in str(listed)


def test_the_cache_answers_within_its_ttl_and_a_revoke_lands_after_it(eng):
    key = keys.create(eng, "svc", ["predict"])
    cache = keys.KeyCache(lambda: eng, ttl=60)
    assert cache.verify(key).name == "key:svc"
    keys.revoke(eng, "svc")
    assert cache.verify(key).name == "key:svc"  # still cached: ttl is the revoke delay
    assert keys.KeyCache(eng, ttl=0).verify(key) is None
    assert cache.cached("wb_000000000000_" + "a" * 43) == (False, None)
    small = keys.KeyCache(eng, ttl=60, max_entries=2)
    for i in range(5):
        small.verify(f"wb_{i:012x}_{'a' * 43}")
    assert len(small._answers) <= 2


def test_a_missing_pepper_is_allowed_and_warned_once(eng, monkeypatch):
    monkeypatch.delenv("WORKBENCH_KEY_PEPPER")
    monkeypatch.setattr(keys, "_warned", type(keys._warned)())
    with Records("workbench.keys") as logged:
        key = keys.create(eng, "local", ["predict"])
        assert keys.verify(eng, key).name == "key:local"
    warned = [r for r in logged.records if "WORKBENCH_KEY_PEPPER" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert key not in logged.text()
