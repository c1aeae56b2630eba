"""Redaction of secrets before text leaves the process: logs, stdout, health, errors, audit.

The one place that knows what a secret looks like in text the hub writes out:

* the password in a URL's user information (``mqtt://hub:s3cret@broker:1883`` from
  ``HUB_MQTT__URL``, an InfluxDB or webhook URL) becomes ``***``; the user name stays,
  it tells an operator which account is used and is not a secret;
* an API key (``hub_<id>_<secret>``, :mod:`hub.api.keys`) keeps its public id only;
* the value of a credential-like query parameter (``access_token=``, ``token=``,
  ``password=``, ``api_key=``, ``secret=``…) becomes ``***``.

Logging applies :func:`redact_text` to every rendered line (``hub.logging``), so a
secret inside an exception message or a third-party library's log line is caught as
well as one passed as a field. Text that is redacted stays readable: only the
secret itself is replaced, never the host, the path or the other parameters.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

#: What a redacted secret is replaced with.
MASK = "***"

#: Query parameter names (lower case, ``-`` read as ``_``) whose value is a credential.
CREDENTIAL_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "client_secret",
        "id_token",
        "key",
        "passwd",
        "password",
        "pwd",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
#: Name endings that make any parameter a credential (``x_auth_token``, ``db_password``).
_CREDENTIAL_SUFFIXES = ("_token", "_secret", "_password", "_passwd", "_api_key", "_apikey")

# scheme://user:password@  (the password up to the last "@" before the host part)
_URL_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@?#]*):(?P<password>[^\s/?#]*)@"
)
# hub_<8 hex id>_<43 url-safe characters>: hub.api.keys' format.
_API_KEY = re.compile(r"\b(hub_[0-9a-f]{8}_)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
# name=value inside a query string or free text; the name is checked by is_credential_name.
_PARAM = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.\-]{0,63})=(?P<value>[^\s&;#\"']+)")


def is_credential_name(name: str) -> bool:
    """True when a parameter (or field) called ``name`` carries a credential."""
    norm = unquote_plus(name).strip().lower().replace("-", "_")
    return norm in CREDENTIAL_PARAMS or norm.endswith(_CREDENTIAL_SUFFIXES)


def redact_url(url: str) -> str:
    """``url`` with the password of its user information (if any) replaced by ``***``."""
    return _URL_USERINFO.sub(_mask_userinfo, url)


def redact_query(query: str) -> str:
    """A raw query string with the values of credential-like parameters replaced, and the
    secret of an API key pasted into any other parameter.

    Everything else is kept as it was sent (order, encoding, blank values), so an
    audit reader sees what the client asked for, less the secrets.
    """
    if not query:
        return query
    parts = query.split("&")
    out: list[str] = []
    for part in parts:
        name, sep, _value = part.partition("=")
        if sep and is_credential_name(name):
            out.append(f"{name}={MASK}")
        elif "hub_" in part:
            out.append(_API_KEY.sub(rf"\1{MASK}", part))
        else:
            out.append(part)
    return "&".join(out)


def redact_text(text: str) -> str:
    """Free text (a log line, an error message) with every secret it contains replaced."""
    if "://" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "hub_" in text:
        text = _API_KEY.sub(rf"\1{MASK}", text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    return text


def _mask_userinfo(match: re.Match[str]) -> str:
    return f"{match['head']}{match['user']}:{MASK}@"


def _mask_param(match: re.Match[str]) -> str:
    if is_credential_name(match["name"]) and match["value"] != MASK:
        return f"{match['name']}={MASK}"
    return match.group(0)
