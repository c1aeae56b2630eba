"""Cluster mode (CONTRACT §11): leases in NATS KV, the fair share of partitions and ingest
slots each worker holds, and the partitions' rule-state snapshots (docs/scaling.md)."""
