"""The services citizens may report: a YAML file (``HUB_REPORTS__SERVICES_PATH``), not code.

Each service is an Open311 service (code, name, description, group, keywords, and
attributes for the service definition) and says what it means to the hub: the asset
type its problem concerns (a flooded street concerns the flood gauges), so reports
link to that asset type's alerts and ``citizen_reports`` rules can count them.

Strict like every YAML file of the hub: unknown keys, duplicate codes, an asset type
the device catalog does not have, list attributes without values, all are errors
naming ``file:line`` (hub.yamlfile).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.ports import ServiceAttribute, ServiceInfo, ServiceValue
from hub.yamlfile import FileProblem, YamlMap, line_of, load_yaml, plain, validation_messages

#: The file's name: the rule loader never takes a ``services.yaml`` for a rule file.
SERVICES_FILE = "services.yaml"  # hub.rules.loader.SERVICES_FILE skips it
#: Service and attribute codes: what Open311 clients put in URLs and form keys.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LIST_TYPES = ("singlevaluelist", "multivaluelist")

Text = Annotated[str, Field(max_length=1000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueModel(_Strict):
    """One option of a list attribute."""

    key: Annotated[str, Field(min_length=1, max_length=100)]
    name: Annotated[str, Field(min_length=1, max_length=200)]


class AttributeModel(_Strict):
    """An attribute of the service definition (Open311 ``attribute``)."""

    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    description: Text
    required: bool = False
    variable: bool = True
    datatype_description: Text = ""
    order: Annotated[int, Field(ge=1, le=1000)] | None = None
    values: list[ValueModel] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _values_for_lists(self) -> Self:
        if self.datatype in LIST_TYPES and not self.values:
            raise ValueError(f"a {self.datatype} attribute needs values (key and name each)")
        if self.datatype not in LIST_TYPES and self.values:
            raise ValueError(f"values apply to {' and '.join(LIST_TYPES)} attributes only")
        keys = [v.key for v in self.values]
        if len(set(keys)) != len(keys):
            raise ValueError("values: every key must be different")
        return self


class ServiceModel(_Strict):
    """One service citizens may report."""

    service_code: Annotated[str, Field(pattern=CODE_PATTERN)]
    service_name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Text = ""
    group: Annotated[str, Field(max_length=100)] = ""
    keywords: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=30
    )
    # realtime: the request id comes back at once; batch: a token, for tokens/{token}.
    type: Literal["realtime", "batch"] = "realtime"
    # The device catalog's asset type the problem concerns (None: no sensor does).
    asset_type: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None
    problem: Annotated[str, Field(max_length=100)] = ""
    agency_responsible: Annotated[str, Field(max_length=200)] = ""
    service_notice: Text = ""
    attributes: list[AttributeModel] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _unique_attributes(self) -> Self:
        codes = [a.code for a in self.attributes]
        if len(set(codes)) != len(codes):
            raise ValueError("attributes: every code must be different")
        orders = [a.order for a in self.attributes if a.order is not None]
        if len(set(orders)) != len(orders):
            raise ValueError("attributes: every order must be different")
        return self

    def info(self) -> ServiceInfo:
        """The service as the hub's ports carry it (attributes in their order)."""
        attrs = [
            ServiceAttribute(
                code=a.code,
                datatype=a.datatype,
                required=a.required,
                description=a.description,
                order=a.order if a.order is not None else i,
                variable=a.variable,
                datatype_description=a.datatype_description,
                values=tuple(ServiceValue(v.key, v.name) for v in a.values),
            )
            for i, a in enumerate(self.attributes, start=1)
        ]
        attrs.sort(key=lambda a: a.order)
        return ServiceInfo(
            service_code=self.service_code,
            service_name=self.service_name,
            description=self.description,
            group=self.group,
            keywords=tuple(self.keywords),
            type=self.type,
            asset_type=self.asset_type,
            problem=self.problem,
            agency_responsible=self.agency_responsible,
            service_notice=self.service_notice,
            attributes=tuple(attrs),
        )


class ServicesFile(_Strict):
    """The whole file: ``services:`` and the list."""

    services: list[ServiceModel] = Field(max_length=500)


def load_services(path: Path, asset_types: Collection[str] | None = None) -> list[ServiceInfo]:
    """The services of ``path``; raises FileProblem with ``file:line: key: message`` lines.

    With ``asset_types`` (the device catalog's), a service naming another is an error.
    """
    document = load_yaml(path)
    if document is None or not isinstance(document, YamlMap):
        raise FileProblem([f"{path}:1: must be a mapping with a services: list"])
    try:
        model = ServicesFile.model_validate(plain(document))
    except ValidationError as exc:
        raise FileProblem(validation_messages(path, document, exc)) from None
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, service in enumerate(model.services):
        line = line_of(document, ("services", i, "service_code"))
        if service.service_code in seen:
            problems.append(
                f"{path}:{line}: services[{i}].service_code: {service.service_code!r} is"
                f" already the code of services[{seen[service.service_code]}]"
            )
        seen.setdefault(service.service_code, i)
        known = asset_types is None or service.asset_type is None
        if not known and service.asset_type not in (asset_types or ()):
            line = line_of(document, ("services", i, "asset_type"))
            listed = ", ".join(sorted(asset_types or ()))
            problems.append(
                f"{path}:{line}: services[{i}].asset_type: {service.asset_type!r} is not an"
                f" asset type of the device catalog ({listed})"
            )
    if problems:
        raise FileProblem(problems)
    return [s.info() for s in model.services]
