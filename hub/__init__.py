"""City infrastructure sensing hub: MQTT telemetry in, journal, store, rules, alerts, API."""

__version__ = "0.1.0"
