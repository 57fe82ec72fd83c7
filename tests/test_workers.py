"""Which server processes are alive: the worker registry in Redis that claims are judged by."""

import time

import pytest
from django.core.cache import cache

from gemini_server import workers
from gemini_server.workers import worker_alive, worker_id


@pytest.fixture
def redis_client(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis shared by several processes (set REDIS_URL)")
    return cache._cache.get_client(write=True)


def test_this_process_is_alive():
    assert worker_alive(worker_id()) is True


def test_a_claim_without_a_worker_cannot_be_judged():
    assert worker_alive("") is None


def test_without_redis_another_process_cannot_be_judged(settings):
    settings.REDIS_URL = ""

    assert worker_alive("another-host-77-0badcafe") is None


def test_a_worker_without_its_key_is_dead_once_the_registry_is_old(redis_client):
    redis_client.set("workers:registry-born", "1")  # 1970, by Redis's clock
    redis_client.set("workers:alive:other-host-2-aa", "1", ex=3)

    assert worker_alive("gone-host-1-00") is False
    assert worker_alive("other-host-2-aa") is True


def test_a_young_registry_proves_nothing_by_a_missing_key(redis_client):
    # Redis just lost its data (a restart): live workers have not announced themselves yet.
    workers._refresh_once()

    assert worker_alive("gone-host-1-00") is None
    assert redis_client.exists(f"workers:alive:{worker_id()}")


def test_a_worker_that_stops_refreshing_is_dead_within_its_ttl(redis_client, settings):
    settings.WORKER_TTL_SECONDS = 1
    redis_client.set("workers:registry-born", "1")
    redis_client.set("workers:alive:crashed-host-3-bb", "1", ex=1)
    assert worker_alive("crashed-host-3-bb") is True

    time.sleep(1.5)

    assert worker_alive("crashed-host-3-bb") is False


def test_a_worker_that_retires_is_dead_at_once(redis_client, monkeypatch):
    monkeypatch.setattr(workers, "_retired", False)
    workers.worker_start()
    workers._refresh_once()  # the refresher may be between two rounds
    assert redis_client.exists(f"workers:alive:{worker_id()}")

    workers.worker_retire()

    assert not redis_client.exists(f"workers:alive:{worker_id()}")
    assert worker_alive(worker_id()) is False
