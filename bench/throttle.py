"""The per-service rate limit's cost per request: DRF's `SimpleRateThrottle` (every request's timestamp of the last
period in one cache entry, read and written whole) against `ServiceRateThrottle` (a sliding window of two integers,
raised with INCR), each with a full minute of history at the default rate (5,999 requests in the last 60 s).

    .venv/bin/python bench/throttle.py                                        # the local-memory cache
    REDIS_URL=redis://127.0.0.1:6379/10 .venv/bin/python bench/throttle.py    # Redis (it writes throttle keys)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disbalance.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from rest_framework.throttling import SimpleRateThrottle  # noqa: E402

from disbalance.auth import ServicePrincipal, ServiceRateThrottle  # noqa: E402

REQUESTS, HISTORY, SERVICE_PK = 300, 5_999, 990_001
KEY = f"bench_throttle_drf_{SERVICE_PK}"


class DrfThrottle(SimpleRateThrottle):
    scope = "service"

    def get_cache_key(self, request: object, view: object) -> str:
        return KEY


def measure(throttle_class: type) -> tuple[float, float]:
    request = SimpleNamespace(user=ServicePrincipal(service=SimpleNamespace(pk=SERVICE_PK), token=None))
    wall = cpu = 0.0
    for _ in range(REQUESTS):
        throttle = throttle_class()
        started, cpu_started = time.perf_counter(), time.process_time()
        assert throttle.allow_request(request, None)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        if throttle_class is DrfThrottle:  # keep its history at HISTORY entries (outside the timing)
            throttle.history.pop()
            cache.set(KEY, throttle.history, 60)
    return wall * 1000 / REQUESTS, cpu * 1000 / REQUESTS


def main() -> None:
    now = time.time()
    cache.set(KEY, [now - i * 0.01 for i in range(HISTORY)], 60)
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"cache: {backend}, load average {os.getloadavg()[0]:.1f}; {REQUESTS} requests each, {HISTORY} requests "
          "of history in the last minute")
    for name, throttle_class in (("DRF SimpleRateThrottle (timestamp list)", DrfThrottle),
                                 ("ServiceRateThrottle (sliding window)", ServiceRateThrottle)):
        wall, cpu = measure(throttle_class)
        print(f"  {name:<42} {wall:6.3f} ms wall  {cpu:6.3f} ms CPU per request")
    cache.delete(KEY)


if __name__ == "__main__":
    main()
