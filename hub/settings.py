"""Settings (CONTRACT §5): environment ``HUB_*`` (nested with ``__``) over an
optional ``--config FILE`` (YAML) over defaults. No I/O here but reading that file.

Built once in ``main()`` and passed down; never a module-level singleton.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hub.yamlfile import (
    DOTS,
    YamlMap,
    YamlSyntaxError,
    describe,
    key_path,
    line_of,
    parse_yaml,
    plain,
)

_PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "password", "admin", "token"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    """Broker connection (CONTRACT §5 ``HUB_MQTT__*``)."""

    url: str = ""
    embedded_listen: str = "127.0.0.1:1883"
    # Which embedded broker: Mosquitto as a child process when installed, else the
    # in-process amqtt fallback ("auto"); or force one (docs/deploy.md).
    embedded_broker: Literal["auto", "mosquitto", "amqtt"] = "auto"
    # MQTT protocol of the ingest session: "5" (receive-maximum, session expiry) or
    # "3.1.1" for brokers without MQTT 5, such as the in-process amqtt fallback.
    protocol: Literal["5", "3.1.1"] = "5"
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "city"
    client_id: Annotated[str, Field(min_length=1, max_length=128)] = "hub"
    # MQTT 5 receive-maximum: how many QoS 1 messages the broker may have in flight
    # to us. Group commit acks a whole batch at once, so this is sized to cover
    # one commit interval at the target rate (15k/s x 10 ms) with a wide margin.
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 2000
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0
    ca_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        # The messages never quote the value: it may carry the broker password.
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError("must look like mqtt://[user:pass@]host:port or mqtts://...")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return value

    @field_validator("embedded_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:1883")
        return value

    @property
    def embedded(self) -> bool:
        """True when the hub runs its own broker (no ``url`` configured)."""
        return not self.url

    def embedded_host_port(self) -> tuple[str, int]:
        """``embedded_listen`` split into host and port."""
        host, _, port = self.embedded_listen.rpartition(":")
        return host.strip("[]"), int(port)


class StoreSettings(_Section):
    """Which telemetry store to use."""

    backend: Literal["embedded", "influxdb"] = "embedded"
    # Where the store sink runs: in a child process on another core ("process"), or
    # in the hub's event loop ("inline"); "auto" is "process" for the embedded store
    # when the hub may use two cores or more, where it was measured to pay off.
    # docs/storage.md, "The store writer process".
    writer: Literal["auto", "process", "inline"] = "auto"

    @property
    def writer_in_process(self) -> bool:
        """Whether the store sink runs in its own process, "auto" resolved."""
        if self.writer == "auto":
            return self.backend == "embedded" and len(os.sched_getaffinity(0)) >= 2
        return self.writer == "process"


class InfluxSettings(_Section):
    """InfluxDB connection (1.x, 2.x or 3.x Core) and write batching."""

    url: str = ""
    api: Literal["v1", "v2", "v3"] = "v1"
    database: str = "hub"
    org: str = ""
    token: SecretStr | None = None
    username: str = ""
    password: SecretStr | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 200
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class IngestSettings(_Section):
    """Decoding limits and policies (CONTRACT §2)."""

    unknown_devices: Literal["accept", "reject"] = "accept"
    max_payload_bytes: Annotated[int, Field(ge=64, le=16 * 1024 * 1024)] = 64 * 1024
    max_batch_readings: Annotated[int, Field(ge=1, le=100_000)] = 1000
    future_tolerance_s: Annotated[int, Field(ge=0)] = 300
    backfill_window_s: Annotated[int, Field(ge=1)] = 30 * 86400
    dead_letter_capacity: Annotated[int, Field(ge=10)] = 10_000
    dead_letter_payload_bytes: Annotated[int, Field(ge=16, le=65536)] = 1024


class JournalSettings(_Section):
    """The log between ingest and the consumers: on local disk, or a NATS JetStream stream."""

    # "local": segments under HUB_DATA_DIR (one process); "jetstream": the replicated
    # stream of HUB_NATS__* that the workers of a cluster share (CONTRACT §11).
    backend: Literal["local", "jetstream"] = "local"
    max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 2 * 1024**3
    segment_bytes: Annotated[int, Field(ge=64 * 1024)] = 64 * 1024**2
    # Group commit: one fsync covers everything appended within this window.
    commit_interval_ms: Annotated[int, Field(ge=0, le=1000)] = 5


class NatsSettings(_Section):
    """NATS JetStream in cluster mode (CONTRACT §11, docs/scaling.md)."""

    # Every server of the NATS cluster, comma-separated, so a worker fails over:
    # nats://[user:pass@]host:port or tls://...
    url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ca_file: Path | None = None
    # The readings stream and its subjects (SUBJECT_PREFIX.<partition>).
    stream: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "HUB_READINGS"
    subject_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = (
        "hub.readings"
    )
    # Copies of every message: 3 on a three-node cluster (one node may fail), 1 on
    # a single server. Fixed, like the partitions, when the stream is created.
    replicas: Annotated[int, Field(ge=1, le=5)] = 3
    # Partitions of the stream (a district's readings all go to one): the unit of
    # work a live worker owns. Fixed when the stream is created; see docs/scaling.md
    # for how to size it (a few per worker you may ever run, say 16-64).
    partitions: Annotated[int, Field(ge=1, le=1024)] = 16
    # The stream's size bound: when full, appends wait (ingest stops acknowledging)
    # until the consumers catch up, as the local journal's HUB_JOURNAL__MAX_BYTES.
    max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 8 * 1024**3
    # How long one publish waits for the stream's acknowledgement before it is retried.
    publish_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @field_validator("url", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("url")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        # The messages never quote a URL: it may carry a password.
        for n, url in enumerate(value, start=1):
            parts = urlsplit(url)
            if parts.scheme not in {"nats", "tls"} or not parts.hostname:
                raise ValueError(
                    f"server {n} must look like nats://[user:pass@]host:port or tls://..."
                )
            try:
                parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
            except ValueError:
                raise ValueError(f"server {n} has a port that is not a number") from None
        return value


def _host_name() -> str:
    """This machine's host name as a worker id (its first label, cleaned to the pattern)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]).strip("-_")
    return name[:64] or "worker"


class ClusterSettings(_Section):
    """This worker's place in a cluster (CONTRACT §11, docs/scaling.md)."""

    # The worker's name among the others: leases say which worker holds what. Its MQTT
    # sessions are named after the ingest slots it holds (HUB_MQTT__CLIENT_ID-slot<n>),
    # not after the worker, so a survivor can take over a dead worker's session.
    worker_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")] = Field(
        default_factory=_host_name
    )
    # A lease not renewed within this long expires and another worker takes what it
    # held: the time a dead worker's partitions and ingest slots wait at most.
    # Renewed every third of it. Fixed when the lease bucket is created.
    lease_ttl_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    # MQTT sessions the ingest workers share (each one a $share member with the client
    # id HUB_MQTT__CLIENT_ID-slot<n>); at least the number of ingest workers.
    ingest_slots: Annotated[int, Field(ge=1, le=256)] = 4
    # The shared-subscription group name ($share/<group>/...).
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "hub"


class RulesSettings(_Section):
    """Where rule files are and how the engine treats time."""

    paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["rules"])
    # Readings older than the newest seen for their series by more than this
    # are stored but not evaluated (event time with a stated tolerance).
    late_tolerance_s: Annotated[int, Field(ge=0)] = 300
    managed_dir: str = "rules/managed"
    watch: bool = True

    @field_validator("paths", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


class AlertsSettings(_Section):
    """Alert routing file and notifier defaults."""

    routes_path: str = "rules/routes.yaml"
    sender: str = "hub@city.example"
    webhook_secret: SecretStr | None = None

    @field_validator("webhook_secret")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret")
        return value


class ApiSettings(_Section):
    """HTTP API and console."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    metrics_public: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    #: Reverse proxies (addresses or networks) whose ``X-Forwarded-For`` names the client;
    #: empty: the client is the connection's peer and the header is ignored.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


class IndicatorsSettings(_Section):
    """Indicator definitions, the city's calendar, device roll-up retention (docs/indicators.md)."""

    paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["rules/indicators"])
    # Days, weeks and months are those of this IANA time zone (DST changes included).
    timezone: str = "UTC"
    # Device-hour roll-ups are kept this long: longer than the backfill window, so a
    # late reading always finds its hour. District-days are kept for good.
    hour_retention_days: Annotated[int, Field(ge=2, le=3660)] = 35
    # The hour in progress is saved (and counted in queries) this often; finished
    # hours and late readings at every live checkpoint. Shorter: fresher figures for
    # the current hour and less to rebuild after a crash; longer: less CPU.
    save_interval_s: Annotated[int, Field(ge=5, le=3600)] = 300
    device_day_retention_days: Annotated[int, Field(ge=1, le=36600)] = 400

    @field_validator("paths", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; an IANA name such as Europe/Paris"
            ) from None
        return value


class AuditSettings(_Section):
    """The audit log: retention and the key of its hash chain (docs/api.md, "Audit log")."""

    # Entries older than this are deleted (each deletion is itself an audit entry).
    retention_days: Annotated[int, Field(ge=1, le=36600)] = 400
    # Key of the chain's HMAC: kept out of the database, so someone who can write the
    # database cannot forge a consistent chain. Unset: a key file in HUB_DATA_DIR.
    chain_key: SecretStr | None = None

    @field_validator("chain_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (
            value.get_secret_value().lower() in _PLACEHOLDER_SECRETS
            or len(value.get_secret_value()) < 16
        ):
            raise ValueError("is a placeholder or shorter than 16 characters; set a real secret")
        return value


class ConsoleSettings(_Section):
    """The operations console: map tiles and district outlines (docs/console.md)."""

    # Raster tiles behind the map, an XYZ URL template such as
    # https://tiles.city.example/{z}/{x}/{y}.png; empty: no tiles (a control room
    # without internet), the map draws the district outlines and the devices only.
    tile_url: str = ""
    tile_attribution: Annotated[str, Field(max_length=500)] = ""
    tile_max_zoom: Annotated[int, Field(ge=1, le=22)] = 19
    # The city's districts as a GeoJSON FeatureCollection whose features carry a
    # ``district`` property; unset: no outlines (``hub demo`` ships its own).
    districts_geojson: Path | None = None
    # Language of the console when the browser asks for none that is shipped.
    default_language: Literal["en", "zh-CN"] = "en"

    @field_validator("tile_url")
    @classmethod
    def _check_tiles(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an http(s) URL template, e.g. https://host/{z}/{x}/{y}.png")
        if not all(f"{{{k}}}" in value for k in "zxy"):
            raise ValueError("must contain {z}, {x} and {y}")
        return value

    @property
    def tile_origin(self) -> str | None:
        """Scheme and host the tiles come from (the browser must be allowed to load them)."""
        if not self.tile_url:
            return None
        parts = urlsplit(self.tile_url.replace("{s}", "a"))
        host = parts.netloc
        if "{s}" in self.tile_url.split("/")[2]:
            host = "*." + host.split(".", 1)[1] if "." in host else host
        return f"{parts.scheme}://{host}"


class OpenDataSettings(_Section):
    """The public open-data endpoints (docs/open-data.md): what they say and what they cost."""

    # Serve /sta/v1.1 and /open/v1 (no key needed). Off: nothing public but health.
    enabled: bool = True
    # The address the public reaches the hub at (https://data.city.example), for the links
    # in responses; empty: the address each request came to. Set it behind a proxy or cache.
    base_url: str = ""
    title: Annotated[str, Field(min_length=1, max_length=200)] = "City infrastructure sensor data"
    publisher: Annotated[str, Field(min_length=1, max_length=200)] = "City"
    # An Open Definition licence id (what Frictionless expects) and its text's address.
    license_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+-]{1,64}$")] = "CC-BY-4.0"
    license_url: str = "https://creativecommons.org/licenses/by/4.0/"
    # Per client address (behind HUB_API__TRUSTED_PROXIES: the client they name), a
    # token bucket: this many requests a second on average, this many at once.
    rate_per_s: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    burst: Annotated[int, Field(ge=1, le=100_000)] = 60
    # Queries that read the stores run off the event loop, at most this many at a time;
    # one waits this long for a turn (then 503) and may run this long (then 503).
    max_concurrent_queries: Annotated[int, Field(ge=1, le=64)] = 4
    queue_wait_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    query_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Largest page ($top) of any collection, and the page when $top is not given.
    max_page: Annotated[int, Field(ge=10, le=10_000)] = 1000
    default_page: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Responses may be cached this long by browsers and shared caches.
    cache_max_age_s: Annotated[int, Field(ge=0, le=86_400)] = 60
    # Publication of aggregates and daily datasets: how far back the first run goes, how
    # long late readings get before a bucket or day is published (on top of the catalog's
    # delay), how often the publisher looks for what became due.
    backfill_days: Annotated[int, Field(ge=0, le=366)] = 7
    settle_s: Annotated[int, Field(ge=0, le=86_400)] = 600
    publish_every_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @field_validator("base_url", "license_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
            raise ValueError("must be an http(s) address without a query, e.g. https://host/path")
        return value

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        # Links are built as base_url + "/sta/v1.1/…"
        return value.rstrip("/")

    @model_validator(mode="after")
    def _page(self) -> OpenDataSettings:
        if self.default_page > self.max_page:
            raise ValueError("default_page must not be above max_page")
        return self


class ReportsSettings(_Section):
    """Citizen reports: Open311 GeoReport v2 at /open311/v2 (docs/reports.md)."""

    # The services citizens may report (YAML; services.yaml files are never rule files).
    services_path: str = "rules/services.yaml"
    # When set, a request naming another jurisdiction_id is refused (404, as the
    # specification says); empty: jurisdiction_id is accepted and ignored.
    jurisdiction_id: Annotated[str, Field(max_length=200)] = ""
    # How long a reporter's e-mail, name and phone are kept after the report arrived;
    # then they are erased (the report stays, without them).
    contact_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    # Linking: a report joins the incidents of the alerts of its service's asset type
    # whose device is within this distance (or whose district it is in, for area
    # alerts and devices without a location), open or resolved within the window.
    link_radius_m: Annotated[float, Field(gt=0, le=50_000)] = 500.0
    link_window_s: Annotated[int, Field(ge=0, le=30 * 86400)] = 3600
    # A report's district: the one of the nearest device with a location within this
    # distance; farther from every device, default_district.
    district_radius_m: Annotated[float, Field(gt=0, le=100_000)] = 2000.0
    default_district: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "unassigned"
    # Hints: at least hint_min_reports reports of a service within hint_radius_m of a
    # device of its asset type within hint_window_s, while that device has no open
    # alert, say the sensor may be missing something (or be faulty).
    hint_min_reports: Annotated[int, Field(ge=1, le=1000)] = 3
    hint_radius_m: Annotated[float, Field(gt=0, le=50_000)] = 300.0
    hint_window_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 6 * 3600
    # Public requests per client address and minute (a burst of that many, then
    # refilled evenly): posting reports, and reading.
    post_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 10
    read_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = 300


class LogSettings(_Section):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"


class Settings(BaseSettings):
    """All of the hub's settings."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Annotated[Path, Field(validate_default=True)] = Path("./var")
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    journal: JournalSettings = JournalSettings()
    nats: NatsSettings = NatsSettings()
    cluster: ClusterSettings = ClusterSettings()
    rules: RulesSettings = RulesSettings()
    alerts: AlertsSettings = AlertsSettings()
    api: ApiSettings = ApiSettings()
    console: ConsoleSettings = ConsoleSettings()
    open_data: OpenDataSettings = OpenDataSettings()
    indicators: IndicatorsSettings = IndicatorsSettings()
    audit: AuditSettings = AuditSettings()
    reports: ReportsSettings = ReportsSettings()
    log: LogSettings = LogSettings()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Made absolute once, when the settings are built at start-up: the embedded
        # Mosquitto runs in a folder of its own and the store writer is another
        # process, so a path relative to the working directory would mean another
        # place to them. Normalised, not resolved: a symlinked data dir stays one.
        return Path(os.path.abspath(value.expanduser()))

    @model_validator(mode="after")
    def _influx_needs_url(self) -> Settings:
        if self.store.backend == "influxdb" and not self.influx.url:
            raise ValueError("HUB_STORE__BACKEND=influxdb needs HUB_INFLUX__URL")
        return self

    @model_validator(mode="after")
    def _jetstream_needs_nats(self) -> Settings:
        if self.journal.backend == "jetstream" and not self.nats.url:
            raise ValueError("HUB_JOURNAL__BACKEND=jetstream needs HUB_NATS__URL")
        return self

    @model_validator(mode="after")
    def _hours_outlive_backfill(self) -> Settings:
        if self.indicators.hour_retention_days * 86400 <= self.ingest.backfill_window_s:
            raise ValueError(
                "HUB_INDICATORS__HOUR_RETENTION_DAYS must be longer than the backfill window"
                " (HUB_INGEST__BACKFILL_WINDOW_S), or late readings would miss their hour"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment wins over the config file, which wins over defaults."""
        return (env_settings, init_settings)


class ConfigError(Exception):
    """A configuration file or variable is wrong; the message says where."""


def load_settings(config_file: Path | None = None) -> Settings:
    """Build settings from the environment over ``config_file`` (YAML) over defaults.

    Raises ConfigError with one line per problem: ``file:line: key.path: message``
    for a value from the file, ``environment (HUB_X__Y): x.y: message`` for one from
    the environment.
    """
    document: Any = None
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            document = parse_yaml(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc}") from exc
        except YamlSyntaxError as exc:
            raise ConfigError(f"{config_file}:{exc.line}: {exc}") from exc
        if document is None:
            document = YamlMap()
        if not isinstance(document, YamlMap):
            raise ConfigError(f"{config_file}:1: must be a mapping of settings")
        file_values = plain(document)
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = key_path(err["loc"], document, DOTS)
            what = describe(err) if path == "(file)" else f"{path}: {describe(err)}"
            problems.append(f"{_origin(err['loc'], config_file, document)}: {what}")
        raise ConfigError("\n".join(problems)) from exc


def _origin(loc: tuple[int | str, ...], config_file: Path | None, document: Any) -> str:
    """Where the value at ``loc`` came from: its environment variable, or file:line."""
    names = {name.upper() for name in os.environ}
    for depth in range(len(loc), 0, -1):
        variable = "HUB_" + "__".join(str(p) for p in loc[:depth]).upper()
        if variable in names:
            return f"environment ({variable})"
    if config_file is not None and loc and isinstance(document, YamlMap):
        if loc[0] in document:
            return f"{config_file}:{line_of(document, loc)}"
        return str(config_file)
    return "environment"
