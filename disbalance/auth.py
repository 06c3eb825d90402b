"""Bearer-token authentication of consumer services, and per-service throttling.

`request.user` is a `ServicePrincipal`; every view scopes its querysets by `request.user.service`,
so another service's object is simply not found (404, never 403).

A valid token is remembered in the process for `SERVICE_TOKEN_CACHE_SECONDS` (default 5), so that a request costs
no token query. Revocation (`service_token_revoke`) and any save of a token or a service empty the cache of the
process that made them at once; other processes (web workers, nodes) stop accepting a revoked token, or one of a
deactivated service, within `SERVICE_TOKEN_CACHE_SECONDS`. Set it to 0 to look tokens up on every request.
Unknown and refused tokens are never cached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from disbalance.models import ConsumerService, ServiceToken, hash_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServicePrincipal:
    service: ConsumerService
    token: ServiceToken

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    @property
    def pk(self) -> int:
        return self.service.pk

    def __str__(self) -> str:
        return f"service:{self.service.slug}"


# token hash -> (valid until, per `_clock`; the token with its service). Shared by the threads of a process.
_token_cache: dict[str, tuple[float, ServiceToken]] = {}
_TOKEN_CACHE_MAX = 10_000
_clock = time.monotonic


def _cached_token(digest: str) -> ServiceToken | None:
    entry = _token_cache.get(digest)
    if entry is None:
        return None
    if entry[0] <= _clock():
        _token_cache.pop(digest, None)
        return None
    return entry[1]


def _remember_token(digest: str, token: ServiceToken) -> None:
    seconds = settings.SERVICE_TOKEN_CACHE_SECONDS
    if seconds <= 0:
        return
    if len(_token_cache) >= _TOKEN_CACHE_MAX:
        _token_cache.clear()
    _token_cache[digest] = (_clock() + seconds, token)


def token_cache_clear(**_: object) -> None:
    """Forget every cached token of this process (connected to the saves of tokens and services)."""
    _token_cache.clear()


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"
    # Touch last_used_at at most this often: a hot token must not turn every request into a write.
    touch_interval = timedelta(minutes=5)

    def authenticate(self, request: Request) -> tuple[ServicePrincipal, ServiceToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed("Use `Authorization: Bearer <token>`.")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed token.") from exc
        if len(raw) > 200:
            raise exceptions.AuthenticationFailed("Invalid token.")
        digest = hash_token(raw)
        token = _cached_token(digest)
        if token is None:
            token = (
                ServiceToken.objects.select_related("service")
                .filter(token_hash=digest, revoked_at__isnull=True, service__is_active=True)
                .first()
            )
            if token is None:
                raise exceptions.AuthenticationFailed("Invalid or revoked token.")
            _remember_token(digest, token)
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > self.touch_interval:
            ServiceToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return ServicePrincipal(service=token.service, token=token), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsConsumerService(permissions.BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, ServicePrincipal)


class ServiceRateThrottle(throttling.SimpleRateThrottle):
    """One bucket per consumer service (rate: API_RATE_LIMIT, e.g. `6000/min`), counted in a sliding window.

    DRF's own `SimpleRateThrottle` keeps the timestamp of every request of the period in one cache entry, read and
    written whole by every request: at 6,000/min that is a list of up to 6,000 floats pickled both ways per request
    (54 kB each way to Redis), and two requests that read it at once both write it back, one of them lost. Here a
    period is counted by two integers: this window's count, raised with the cache's atomic `incr` (INCR in Redis),
    and the previous window's, weighted by how much of it still lies within the last `duration` seconds. One read
    (`get_many`, one MGET) and one increment per request, whatever the rate, and no lost counts. The estimate
    assumes the previous window's requests were evenly spread; within a window it is exact.
    """

    scope = "service"

    def allow_request(self, request: Request, view: object) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        # The counts live in the cache (Redis). Redis down or restarting must not turn every API call into a 500
        # (found by the soak): throttling fails open for as long as the cache is unreachable.
        try:
            return self._count_request()
        except (RedisError, OSError) as exc:
            logger.warning("throttling skipped: the cache is unavailable", extra={"error": str(exc)[:200]})
            return True

    def _count_request(self) -> bool:
        now = self.timer()
        window = int(now // self.duration)
        current, previous = f"{self.key}:{window}", f"{self.key}:{window - 1}"
        counts = self.cache.get_many([current, previous])
        in_window, before = counts.get(current, 0), counts.get(previous, 0)
        elapsed = now - window * self.duration
        if before * (1 - elapsed / self.duration) + in_window + 1 > self.num_requests:  # no room for this one
            self._wait = self._seconds_until_free(in_window, before, elapsed)
            return False
        try:
            self.cache.incr(current)
        except ValueError:  # the window's first request (or its count expired): start it, unless another did
            if not self.cache.add(current, 1, timeout=2 * self.duration):
                self.cache.incr(current)
        return True

    def _seconds_until_free(self, in_window: int, before: int, elapsed: float) -> float:
        """When there is room for a request again: as the previous window slides out, or at the next one."""
        if in_window + 1 <= self.num_requests and before:
            # the smallest t with before * (1 - (elapsed + t) / duration) + in_window + 1 <= num_requests
            wait = self.duration * (1 - (self.num_requests - in_window - 1) / before) - elapsed
        else:
            wait = self.duration - elapsed
        return max(1.0, wait)

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if isinstance(request.user, ServicePrincipal):
            return self.cache_format % {"scope": self.scope, "ident": request.user.service.pk}
        return None


def current_service(request: Request) -> ConsumerService:
    return request.user.service  # type: ignore[union-attr]
