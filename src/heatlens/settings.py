"""Settings: the table of DESIGN §5, declared once.

Each field of `Settings` carries its TOML key, environment variable, command-line flag (when there
is one), what uses it and its help text. The config file loader, the environment loader, `--help`,
and docs/settings.md are all built from this one declaration. Precedence: command-line flag, then
environment variable, then config file, then default.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from heatlens.errors import ConfigError

DEFAULT_CONFIG = Path("heatlens.toml")
ENV_PREFIX = "HEATLENS_"


def _meta(key: str, used_by: str, flag: str | None = None) -> dict[str, Any]:
    return {"toml": key, "used_by": used_by, "flag": flag}


class Settings(BaseModel):
    """Every heatlens setting (DESIGN §5). Build one with `load_settings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(
        "duckdb:///heatlens.duckdb",
        description="Where records live: `duckdb:///path.duckdb`, a plain path, or `postgres://…`.",
        json_schema_extra=_meta("store", "all", "--store"),
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone for timestamps without offset (at ingest) and report periods.",
        json_schema_extra=_meta("timezone", "ingest (naive timestamps), periods"),
    )
    production_environments: list[str] = Field(
        ["production", "prod"],
        description="Environments (case-insensitive) whose deployments count for DORA.",
        json_schema_extra=_meta("production_environments", "DORA"),
    )
    incident_link_window: str = Field(
        "7d",
        description="How long after a deployment an incident of its service is linked to it "
        '(`7d`, `36h`, …), or `"unbounded"` (DevLake\'s rule).',
        json_schema_extra=_meta("incident_link_window", "DORA"),
    )
    quantile: Literal["linear", "lower"] = Field(
        "linear",
        description="Quantile method: `linear` interpolation, or `lower` (DevLake-compatible).",
        json_schema_extra=_meta("quantile", "all quantiles"),
    )
    tier_year: Literal[2023, 2021] = Field(
        2023,
        description="Which DORA report's performance tiers to apply: 2023 or 2021.",
        json_schema_extra=_meta("tier_year", "tiers"),
    )
    pseudonymise_key: SecretStr | None = Field(
        None,
        description="Key for pseudonymising `actor` and `author` at ingest (keyed HMAC); "
        "unset: stored as given.",
        json_schema_extra=_meta("pseudonymise_key", "ingest"),
    )
    ci_capability: str = Field(
        "ci",
        description="Capability id given to GitHub/GitLab pipeline runs mapped to usage.",
        json_schema_extra=_meta("ci_capability", "GitHub/GitLab pipeline runs → usage"),
    )
    incident_label: str = Field(
        "incident",
        description="Issue label that makes a GitHub/GitLab issue an incident.",
        json_schema_extra=_meta("incident_label", "GitHub/GitLab issues → incidents"),
    )
    service_map: dict[str, str] = Field(
        {},
        description="Repository, project or PagerDuty service → heatlens service id.",
        json_schema_extra=_meta("service_map", "connectors, webhooks"),
    )
    webhooks_github_secret: SecretStr | None = Field(
        None,
        description="Secret GitHub webhook signatures are checked with; unset: endpoint refuses.",
        json_schema_extra=_meta("webhooks.github_secret", "webhooks"),
    )
    webhooks_gitlab_token: SecretStr | None = Field(
        None,
        description="Token GitLab webhooks must send; unset: endpoint refuses.",
        json_schema_extra=_meta("webhooks.gitlab_token", "webhooks"),
    )
    webhooks_pagerduty_secret: SecretStr | None = Field(
        None,
        description="Secret that PagerDuty webhook signatures are checked with; unset: refuses.",
        json_schema_extra=_meta("webhooks.pagerduty_secret", "webhooks"),
    )
    server_max_request_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest request body the HTTP API accepts (bytes); larger gets 413.",
        json_schema_extra=_meta("server.max_request_bytes", "API"),
    )
    server_max_upload_bytes: int = Field(
        4 * 1024**3,
        gt=0,
        description=(
            "Largest file `heatlens --server URL ingest` may upload (bytes); larger gets 413."
        ),
        json_schema_extra=_meta("server.max_upload_bytes", "API"),
    )
    server_rate_limit_per_minute: int = Field(
        600,
        gt=0,
        description="Requests per minute allowed per token; more gets 429 with Retry-After.",
        json_schema_extra=_meta("server.rate_limit_per_minute", "API"),
    )
    server_auth_proxy_header: str | None = Field(
        None,
        description=(
            "Header a trusted auth proxy sets to the signed-in user's name; when set, a request "
            "from `server.trusted_proxies` carrying it may read the dashboard and API without a "
            "token. Unset: ignored."
        ),
        json_schema_extra=_meta("server.auth_proxy_header", "dashboard, API"),
    )
    server_trusted_proxies: list[str] = Field(
        ["127.0.0.1", "::1"],
        description="Client addresses whose `server.auth_proxy_header` is believed.",
        json_schema_extra=_meta("server.trusted_proxies", "dashboard, API"),
    )
    server_session_hours: float = Field(
        12.0,
        gt=0,
        description="How long a browser login (session cookie) lasts, in hours.",
        json_schema_extra=_meta("server.session_hours", "dashboard"),
    )
    sync: list[dict[str, Any]] = Field(
        [],
        description="Scheduled syncs that `heatlens serve` runs (`[[sync]]` tables).",
        json_schema_extra=_meta("sync", "serve"),
    )
    targets: list[dict[str, Any]] = Field(
        [],
        description="Targets that `heatlens check` evaluates (`[[targets]]` tables).",
        json_schema_extra=_meta("targets", "check"),
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name such as 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("incident_link_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value != "unbounded" and not _DURATION.fullmatch(value):
            raise ValueError(f"{value!r} is not a duration such as '7d', '36h' or 'unbounded'")
        return value

    @field_validator("production_environments")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    @property
    def link_window(self) -> timedelta | None:
        """The incident link window, or None when unbounded."""
        if self.incident_link_window == "unbounded":
            return None
        match = _DURATION.fullmatch(self.incident_link_window)
        assert match is not None  # checked by the validator
        amount, unit = int(match[1]), match[2]
        return timedelta(**{_UNITS[unit]: amount})


_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class SettingInfo:
    """Documentation of one setting, read off the `Settings` declaration."""

    field: str
    toml: str
    env: str
    flag: str | None
    default: Any
    help: str
    used_by: str
    secret: bool


def setting_infos() -> list[SettingInfo]:
    """Every setting with its TOML key, env var, flag, default and help, in declaration order."""
    infos = []
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict), f"setting {name} lacks its TOML key"
        toml = str(extra["toml"])
        infos.append(
            SettingInfo(
                field=name,
                toml=toml,
                env=ENV_PREFIX + toml.upper().replace(".", "_"),
                flag=extra["flag"] if isinstance(extra["flag"], str) else None,
                default=field.default,
                help=field.description or "",
                used_by=str(extra["used_by"]),
                secret="SecretStr" in str(field.annotation),
            )
        )
    return infos


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML tables → dotted keys, except for tables that are values (service_map)."""
    by_toml = {info.toml for info in setting_infos()}
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = prefix + key
        if isinstance(value, dict) and dotted not in by_toml:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _from_env(info: SettingInfo, raw: str) -> Any:
    """Env vars are strings; lists and tables are given as JSON or TOML values."""
    if info.field in {
        "production_environments",
        "service_map",
        "sync",
        "targets",
        "server_trusted_proxies",
    }:
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return (
                [part.strip() for part in raw.split(",")]
                if info.field.endswith(("environments", "proxies"))
                else raw
            )
    return raw


def load_settings(
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Settings from defaults, the config file, the environment and command-line overrides.

    `config` None means `./heatlens.toml` when it exists. `overrides` maps field names to values
    given on the command line (None values are ignored).
    """
    environ = dict(os.environ if environ is None else environ)
    infos = {info.toml: info for info in setting_infos()}
    values: dict[str, Any] = {}
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in _flatten(table).items():
            if key not in infos:
                known = ", ".join(sorted(infos))
                raise ConfigError(f"config file {path}: unknown setting {key!r} (known: {known})")
            values[infos[key].field] = value
    for info in infos.values():
        if info.env in environ:
            values[info.field] = _from_env(info, environ[info.env])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        found = next((i for i in infos.values() if i.field == field), None)
        where = f"{found.toml} (env {found.env})" if found else field
        raise ConfigError(f"setting {where}: {first['msg']}") from None
