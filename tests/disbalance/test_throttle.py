"""The per-service rate limit counted in a sliding window (disbalance/auth.py `ServiceRateThrottle`): two integers
per service in the cache, raised atomically, instead of DRF's list of every request's timestamp."""

import threading
from types import SimpleNamespace

import pytest
from django.core.cache import cache

from disbalance.auth import ServicePrincipal, ServiceRateThrottle


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _request(service_pk: int = 1) -> SimpleNamespace:
    return SimpleNamespace(user=ServicePrincipal(service=SimpleNamespace(pk=service_pk), token=None))


def _throttle(rate: str, clock: _Clock) -> ServiceRateThrottle:
    throttle = ServiceRateThrottle()
    throttle.rate = rate
    throttle.num_requests, throttle.duration = throttle.parse_rate(rate)
    throttle.timer = clock
    return throttle


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def test_the_rate_holds_within_a_window_and_slides_out_of_the_next():
    clock = _Clock(6_000_000.0)  # the start of a 60 s window
    allowed = [_throttle("10/min", clock).allow_request(_request(), None) for _ in range(12)]
    assert allowed == [True] * 10 + [False] * 2
    refused = _throttle("10/min", clock)
    assert not refused.allow_request(_request(), None) and refused.wait() == 60
    clock.now += 60  # the next window: the last 60 s hold 10 requests; one leaves every 6 s
    refused = _throttle("10/min", clock)
    assert not refused.allow_request(_request(), None) and refused.wait() == pytest.approx(6.0)
    clock.now += 6  # a tenth of the previous window has slid out: one request is free, the next in 6 s
    assert _throttle("10/min", clock).allow_request(_request(), None)
    refused = _throttle("10/min", clock)
    assert not refused.allow_request(_request(), None) and refused.wait() == pytest.approx(6.0)
    clock.now += 24  # half of the previous window has slid out: 5 requests are free
    allowed = [_throttle("10/min", clock).allow_request(_request(), None) for _ in range(6)]
    assert allowed == [True] * 4 + [False] * 2  # 5 free, one taken at 6 s
    assert _throttle("10/min", clock).allow_request(_request(service_pk=2), None)  # another service: its own count


def test_concurrent_requests_are_all_counted():
    # DRF's throttle reads and writes one list per request: two requests at once lose one count. Here none is lost.
    clock = _Clock(6_000_000.0)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def spend() -> None:
        barrier.wait()
        for _ in range(25):
            results.append(_throttle("1000/min", clock).allow_request(_request(), None))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 200
    assert cache.get(f"throttle_service_1:{int(clock.now // 60)}") == 200


def test_an_old_window_is_forgotten():
    clock = _Clock(6_000_000.0)
    for _ in range(10):
        _throttle("10/min", clock).allow_request(_request(), None)
    clock.now += 120  # two windows later nothing counts any more
    assert _throttle("10/min", clock).allow_request(_request(), None)
