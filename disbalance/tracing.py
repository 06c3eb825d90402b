"""OpenTelemetry traces: off by default, switched on by the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER=console` prints spans to stdout; `otlp` sends them to `OTEL_EXPORTER_OTLP_ENDPOINT` (needs
the `opentelemetry-exporter-otlp` package, not pinned here: install it where a collector runs). `OTEL_SERVICE_NAME`
names the process (default `disbalance`), `OTEL_SDK_DISABLED=true` turns everything off. Unset or `none`: no
tracing at all (no instrumentation is installed, nothing costs a thing).

Instrumented: Django (the HTTP request), Celery (tasks, with the context carried in the message), psycopg (SQL on
PostgreSQL) and requests (Balance calls and webhooks). The outbox adds its own span per operation, with the
operation's request id, so one charge shows HTTP -> outbox -> task -> Balance call in one trace.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("disbalance")
_INSTRUMENTORS = (DjangoInstrumentor, CeleryInstrumentor, PsycopgInstrumentor, RequestsInstrumentor)
_state: dict[str, Any] = {"provider": None}


def tracing_wanted(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() not in ("", "none")


class _CurrentStdout:
    """Whatever `sys.stdout` is when a span is written (it may be replaced after start-up)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _processors(exporters: str) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    for name in (part.strip().lower() for part in exporters.split(",")):
        if name == "console":
            # Simple (synchronous) for the console: a developer sees the span as it ends.
            exporter = ConsoleSpanExporter(out=_CurrentStdout())  # type: ignore[arg-type]
            processors.append(SimpleSpanProcessor(exporter))
        elif name == "otlp":
            try:
                # An optional dependency: imported only when asked for.
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                logger.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp; no spans are sent")
                continue
            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif name not in ("", "none"):
            logger.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return processors


def tracing_setup() -> bool:
    """Install the tracer provider and the instrumentations if the environment asks for traces (once)."""
    if _state["provider"] is not None:
        return True
    if not tracing_wanted():
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "disbalance")})
    provider = TracerProvider(resource=resource)
    for processor in _processors(os.environ.get("OTEL_TRACES_EXPORTER", "")):
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    for instrumentor in _INSTRUMENTORS:
        if not instrumentor().is_instrumented_by_opentelemetry:
            instrumentor().instrument(tracer_provider=provider)
    _state["provider"] = provider
    logger.info("tracing on", extra={"exporter": os.environ.get("OTEL_TRACES_EXPORTER")})
    return True


def tracing_teardown() -> None:
    """Remove the instrumentations and flush (tests; a process that traces keeps them until it exits)."""
    provider = _state["provider"]
    if provider is None:
        return
    for instrumentor in _INSTRUMENTORS:
        if instrumentor().is_instrumented_by_opentelemetry:
            instrumentor().uninstrument()
    provider.force_flush()
    _state["provider"] = None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span of our own (a no-op without tracing): e.g. one outbox operation."""
    provider = _state["provider"]
    active = provider.get_tracer("disbalance") if provider is not None else tracer
    with active.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None}):
        yield
