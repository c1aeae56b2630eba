"""Field devices: the device catalog, the fleet simulator, scenarios and ``hub demo``.

Import what you use from its module (``devices.catalog``, ``devices.simulator``,
``devices.scenarios``, ``devices.demo``): the hub loads the catalog on start and
should not pay for the simulator's MQTT client.
"""
