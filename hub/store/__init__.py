"""Telemetry stores behind one protocol: InfluxDB (1.x/2.x/3.x) and embedded SQLite."""
