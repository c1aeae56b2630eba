"""Field devices: the fleet simulator, scenarios and ``hub demo``.

Import what you use from its module (``devices.simulator``, ``devices.scenarios``,
``devices.demo``). The asset catalog the simulator follows is production data and
lives in ``hub.catalog``.
"""
