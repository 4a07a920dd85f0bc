"""OpenTelemetry traces: one customer touch followed from the HTTP request that caused it,
through the outbox and Kafka headers (W3C ``traceparent``), into every consumer that applies it.

Spans are always created (trace ids reach logs and event headers); exporting them is off
unless ``OTEL_TRACES_EXPORTER`` is ``otlp`` (endpoint from the standard
``OTEL_EXPORTER_OTLP_*`` variables) or ``console``.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind

_tracer = trace.get_tracer("crm")
# A span keeps this many links at most (OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default): the rest
# of a batch's would be built and dropped (a 2,000-event batch spent a twentieth of its time).
MAX_LINKS = SpanLimits().max_links


def setup(service: str) -> None:
    """Install the process's tracer provider once (uvicorn workers each call this)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"crm-{service}"}))
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "none").lower())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    return None


@contextlib.contextmanager
def server_span(name: str, headers: Mapping[str, str]) -> Iterator[Span]:
    """A span for an incoming request, continuing the caller's trace if it sent one."""
    with _tracer.start_as_current_span(
        name, context=propagate.extract(headers), kind=SpanKind.SERVER
    ) as span:
        yield span


@contextlib.contextmanager
def consumer_span(
    name: str, headers: Sequence[Mapping[str, str]], attributes: Mapping[str, str | int]
) -> Iterator[Span]:
    """A span for applying events. One event: a child of the span that wrote it. A batch (the
    messaging conventions' batch processing): a span linked to its events' writing spans (as
    many as a span keeps), since the events of one batch come from many requests and a span
    has only one parent."""
    if len(headers) == 1:
        context, links = propagate.extract(headers[0]), None
    else:
        context = Context()  # no parent: the links carry the causes
        links = [_link(event_headers) for event_headers in headers[:MAX_LINKS]]
    with _tracer.start_as_current_span(
        name, context=context, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    ) as span:
        yield span


def _link(headers: Mapping[str, str]) -> Link:
    return Link(trace.get_current_span(propagate.extract(headers)).get_span_context())


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``) to an outgoing event's headers."""
    propagate.inject(headers)


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
