"""Prometheus metrics of the hub (exposed at ``GET /metrics``).

Defined once here so every stage counts into the same names; the names are an
operator-facing contract (dashboards and alerting on the hub itself use them).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter("hub_messages_received_total", "MQTT messages received")
READINGS_ACCEPTED = Counter("hub_readings_accepted_total", "Readings decoded and journaled")
READINGS_EVALUATED = Counter(
    "hub_readings_evaluated_total", "Readings passed through the registry and the rules"
)
REJECTED = Counter("hub_rejected_total", "Messages or readings rejected, by reason", ["reason"])
STATUS_RECEIVED = Counter("hub_status_received_total", "Device status messages received")

JOURNAL_BYTES = Gauge("hub_journal_bytes", "Bytes of journal segments on disk")
JOURNAL_LAG = Gauge("hub_journal_lag_bytes", "Journal bytes not yet consumed", ["consumer"])
JOURNAL_FULL = Gauge("hub_journal_full", "1 while the journal is full (acks held back)")
JOURNAL_COMMIT_SECONDS = Histogram(
    "hub_journal_commit_seconds",
    "Group-commit (write + fsync) latency",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
)

STORE_WRITE_SECONDS = Histogram(
    "hub_store_write_seconds",
    "Store batch write latency",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_BATCH_SIZE = Histogram(
    "hub_store_batch_size",
    "Readings per store write",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
STORE_WRITE_ERRORS = Counter("hub_store_write_errors_total", "Failed store writes", ["kind"])
STORE_POINTS_WRITTEN = Counter("hub_store_points_written_total", "Points written to the store")

SEQ_GAPS = Counter("hub_seq_gaps_total", "Readings missing according to per-device seq")
SEQ_DUPLICATES = Counter("hub_seq_duplicates_total", "Readings received twice (same seq)")
DEVICES = Gauge("hub_devices", "Devices known, by status", ["status"])
BROKER_CONNECTED = Gauge("hub_broker_connected", "1 while the ingest MQTT session is up")

RULE_EVALUATIONS = Counter("hub_rule_evaluations_total", "Rule evaluations")
RULE_EVENTS = Counter("hub_rule_events_total", "Rule state changes", ["state"])
RULE_LOAD_ERRORS = Gauge("hub_rule_load_errors", "Rule files currently failing to load")

ALERTS = Counter("hub_alert_transitions_total", "Alert transitions", ["status", "severity"])
NOTIFICATIONS = Counter(
    "hub_notifications_total", "Notification deliveries", ["receiver", "outcome"]
)
EVENT_LOOP_LAG_SECONDS = Histogram(
    "hub_event_loop_lag_seconds",
    "How late a 100 ms timer fires: how long the event loop was held by other work",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ALERT_LATENCY_SECONDS = Histogram(
    "hub_alert_latency_seconds",
    "From the triggering reading's arrival to the alert event's publication",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
)

OPEN_DATA_REQUESTS = Counter(
    "hub_open_data_requests_total",
    "Public open-data requests (no key), by API (sta, bulk) and response status",
    ["api", "status"],
)
OPEN_DATA_RELEASES = Counter(
    "hub_open_data_releases_total",
    "Open-data releases recorded in the release log, by kind (policy, aggregates, daily)",
    ["kind"],
)
INDICATOR = Gauge(
    "hub_indicator",
    "Headline indicators per district, for the current local day so far (docs/indicators.md)",
    ["indicator", "district"],
)
