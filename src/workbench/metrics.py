"""The workbench's Prometheus metrics, in one place (BentoML's ``/metrics`` shows them).

Under ``bentoml serve`` every worker writes its values to BentoML's multiprocess directory
and ``/metrics`` adds them up; gauges say how (``livesum``: the sum over live workers;
``livemostrecent``: the value set last).
Names follow Prometheus conventions: counters end in ``_total`` once exposed.

The event pipeline (:mod:`workbench.writer`, :mod:`workbench.spool`):

- ``workbench_events_total{table, outcome}``: rows ``written`` (committed), ``spooled`` (to
  the local spool while the database was unreachable), ``replayed`` (from the spool into the
  database), ``dead`` (refused by the database: kept in the dead-letter file),
  ``refused`` (neither the database nor the spool could take it: the request got a 503,
  nothing was acknowledged), ``dropped`` (never acknowledged to anyone: a shadow row when the queue
  was full);
- ``workbench_event_writer_restarts_total``, ``workbench_event_backpressure_total`` (requests
  answered 503 because the queue stayed full or the write was not durable in time);
- ``workbench_event_queue_depth``, ``workbench_event_spool_bytes``,
  ``workbench_event_store_up`` (1 while the database answers).

The gateway and the Predictor: requests by arm and status, fallbacks, shadow errors,
guardrail actions, the adaptive batcher's queue depth and batch sizes.

Features by entity (:mod:`workbench.feature_lookup`): ``workbench_feature_rows_total{service,
outcome}`` with outcome ``cache_hit``, ``online`` (read from the online store), ``missing``,
``stale``, ``imputed``, ``refused``; ``workbench_feature_lookup_errors_total{service}`` (the
online store failed: 503); ``workbench_feature_lookup_seconds{service}`` per batched call.

The prediction cache (:mod:`workbench.cache`): ``workbench_prediction_cache_total{level,
outcome}``, level ``l1`` (in process) or ``l2`` (Redis), outcome ``hit``, ``miss``, ``error``
(the L2 did not answer, or is left alone for a second after it did not: the row was
computed) or ``invalidated`` (entries dropped when an
alias moved or a version was retired).

Streams (:mod:`workbench.stream`): ``workbench_stream_events_total{stream, outcome}`` with
outcome ``scored``, ``duplicate`` (a redelivery whose result was already in the sink),
``refused`` (a bad event: dead-lettered with its reason), ``claimed`` (taken over from a
consumer that stopped answering); ``workbench_stream_pending{stream}`` (delivered, not yet
acknowledged); ``workbench_stream_latency_seconds{stream}`` from the event's id time to its
result in the sink.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("workbench_events", "Event rows by what became of them",
                 ["table", "outcome"])
WRITER_RESTARTS = Counter("workbench_event_writer_restarts",
                          "Times the event writer's thread was restarted after an error")
BACKPRESSURE = Counter("workbench_event_backpressure",
                       "Requests answered 503 because their event could not be made durable "
                       "in time (queue full, or neither database nor spool took it)")
EVENT_QUEUE = Gauge("workbench_event_queue_depth", "Events accepted but not yet written",
                    multiprocess_mode="livesum")
SPOOL_BYTES = Gauge("workbench_event_spool_bytes", "Bytes waiting in the event spool",
                    multiprocess_mode="livesum")
# The most recent value set: a process that imports this module without an event writer (the
# Predictor) never sets it and must not count as "down".
STORE_UP = Gauge("workbench_event_store_up", "1 while the event store's database answers",
                 multiprocess_mode="livemostrecent")

REQUESTS = Counter("workbench_gateway_requests", "Gateway predictions by arm and status",
                   ["experiment", "arm", "status"])
FALLBACKS = Counter("workbench_gateway_fallbacks",
                    "Requests answered by the control because their arm failed",
                    ["experiment", "arm"])
SHADOW_ERRORS = Counter("workbench_gateway_shadow_errors", "Failed shadow calls",
                        ["experiment"])
GUARDRAIL_ACTIONS = Counter("workbench_guardrail_actions",
                            "Automatic lifecycle actions (guardrails, auto-conclude)",
                            ["experiment", "action"])

BATCH_QUEUE = Gauge("workbench_batcher_queue_depth", "Rows waiting in the adaptive batcher",
                    ["model"], multiprocess_mode="livesum")
BATCH_SIZE = Histogram("workbench_batcher_batch_size", "Rows per batched model call",
                       ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
FEATURE_ROWS = Counter("workbench_feature_rows", "Entity rows by where their features came from",
                       ["service", "outcome"])
FEATURE_ERRORS = Counter("workbench_feature_lookup_errors",
                         "Online feature store calls that failed", ["service"])
FEATURE_SECONDS = Histogram("workbench_feature_lookup_seconds",
                            "Seconds per batched online feature lookup", ["service"],
                            buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, 1.0))
CACHE = Counter("workbench_prediction_cache", "Prediction cache lookups by level and outcome",
                ["level", "outcome"])
STREAM_EVENTS = Counter("workbench_stream_events", "Stream events by what became of them",
                        ["stream", "outcome"])
STREAM_PENDING = Gauge("workbench_stream_pending",
                       "Stream events delivered to this consumer group and not yet acknowledged",
                       ["stream"], multiprocess_mode="livemostrecent")
STREAM_LATENCY = Histogram("workbench_stream_latency_seconds",
                           "Seconds from an event's arrival in its stream to its result "
                           "in the sink",
                           ["stream"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                                1.0, 2.5, 5.0, 10.0))
