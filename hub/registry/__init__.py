"""Devices: provisioning, last seen, latest values, online/offline, seq accounting."""

from hub.registry.registry import ImportReport, Registry

__all__ = ["ImportReport", "Registry"]
