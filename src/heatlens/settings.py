"""Settings: the table of DESIGN §5, declared once, loaded by pydantic-settings.

Each field of `Settings` carries its TOML key, command-line flag (when there is one), what uses it
and its help text; its environment variable is `HEATLENS_` + the field name in capitals. The config
file, the environment, the flags and docs/settings.md all go through this one declaration.
Precedence: command-line flag, then environment variable, then config file, then default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from heatlens.errors import ConfigError

DEFAULT_CONFIG = Path("heatlens.toml")
ENV_PREFIX = "HEATLENS_"


def _meta(key: str, used_by: str, flag: str | None = None) -> dict[str, Any]:
    return {"toml": key, "used_by": used_by, "flag": flag}


class Settings(BaseSettings):
    """Every heatlens setting (DESIGN §5). Build one with `load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    store: str = Field(
        "duckdb:///heatlens.duckdb",
        description="Where records live: `duckdb:///path.duckdb`, a plain path, or `postgres://…`.",
        json_schema_extra=_meta("store", "all", "--store"),
    )
    duckdb_memory_limit: str = Field(
        "50%",
        description="Memory DuckDB may use for a DuckDB store (and for staging ingest into "
        "Postgres): a size (`8GB`, `512MB`, `8GiB`) or a share of the machine's RAM (`50%`; "
        "a lower cgroup limit counts as the RAM). Beyond it DuckDB spills what it can to disk "
        "(docs/scaling.md, Memory); the process needs some more. One limit per store file and "
        "process.",
        json_schema_extra=_meta("duckdb.memory_limit", "store (DuckDB)"),
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
    # -- the v2 rules for real-world data (DESIGN §3–§5 v2) ------------------------------------
    definitions: Literal["heatlens", "devlake", "fourkeys"] = Field(
        "heatlens",
        description="A preset of the DORA rules: `heatlens`, or `devlake` / `fourkeys` to set "
        "every rule that peer uses (see docs/metrics.md); a setting given explicitly still wins.",
        json_schema_extra=_meta("definitions", "DORA"),
    )
    failure_from_remediation: bool = Field(
        True,
        description="A rollback or hotfix marks the deployment it remediates (the latest earlier "
        "deployment of its service that is not a rollback) as failed.",
        json_schema_extra=_meta("failure_from_remediation", "DORA"),
    )
    failure_severities: list[str] = Field(
        [],
        description="Incident severities (case-insensitive) that link to deployments and count "
        "in the incident metrics; incidents without a severity always count. Empty: all.",
        json_schema_extra=_meta("failure_severities", "DORA incident metrics"),
    )
    tier_min_n: int = Field(
        5,
        ge=1,
        description="Fewest observations a change-failure-rate, lead-time, recovery or restore "
        "row needs to get a DORA tier.",
        json_schema_extra=_meta("tier_min_n", "tiers"),
    )
    lead_time_start: Literal["committed", "authored"] = Field(
        "committed",
        description="Where lead time starts: `committed_at`, or `authored_at` when present "
        "(rebases and squashes reset commit times).",
        json_schema_extra=_meta("lead_time_start", "DORA lead time"),
    )
    bot_actors: list[str] = Field(
        ["*[bot]"],
        description="Glob patterns (`*` any run, `?` one character, case-insensitive) of actors "
        "that are bots: their usage counts in task success and efficiency, not in adoption.",
        json_schema_extra=_meta("bot_actors", "adoption"),
    )
    ingest_timezone: str | None = Field(
        None,
        description="IANA time zone in which timestamps without offset are read at ingest; "
        "unset: the `timezone` setting.",
        json_schema_extra=_meta("ingest_timezone", "ingest (naive timestamps)"),
    )
    # -- end of the v2 rules --------------------------------------------------------------------
    pseudonymise_key: SecretStr | None = Field(
        None,
        description="Key for pseudonymising `actor` and `author` at ingest (keyed HMAC); "
        "unset: stored as given.",
        json_schema_extra=_meta("pseudonymise_key", "ingest"),
    )
    # -- connectors and webhooks (issue 15) -----------------------------------------------------
    ci_capability: str = Field(
        "ci",
        min_length=1,
        description="Capability id that GitHub workflow runs and GitLab pipelines are usage of.",
        json_schema_extra=_meta("ci_capability", "GitHub/GitLab pipeline runs → usage"),
    )
    incident_label: str = Field(
        "incident",
        min_length=1,
        description="Issue label (case-insensitive) that makes a GitHub or GitLab issue an "
        "incident.",
        json_schema_extra=_meta("incident_label", "GitHub/GitLab issues → incidents"),
    )
    service_map: dict[str, str] = Field(
        {},
        description="Repository (`owner/name` or `name`), GitLab project (`group/project` or "
        "`project`) or PagerDuty service id → heatlens service id; unmapped ones keep their "
        "own name or id.",
        json_schema_extra=_meta("service_map", "connectors, webhooks"),
    )
    webhooks_github_secret: SecretStr | None = Field(
        None,
        description="Secret of the GitHub webhook (checks `X-Hub-Signature-256`); unset: "
        "`POST /webhooks/github` answers 404.",
        json_schema_extra=_meta("webhooks.github_secret", "webhooks"),
    )
    webhooks_gitlab_token: SecretStr | None = Field(
        None,
        description="Secret token of the GitLab webhook (compared with `X-Gitlab-Token`); unset: "
        "`POST /webhooks/gitlab` answers 404.",
        json_schema_extra=_meta("webhooks.gitlab_token", "webhooks"),
    )
    webhooks_pagerduty_secret: SecretStr | None = Field(
        None,
        description="Signing secret of the PagerDuty V3 webhook subscription (checks "
        "`X-PagerDuty-Signature`); unset: `POST /webhooks/pagerduty` answers 404.",
        json_schema_extra=_meta("webhooks.pagerduty_secret", "webhooks"),
    )
    webhooks_delivery_retention_days: float = Field(
        7,
        gt=0,
        description="Days a webhook delivery id is remembered, so a replay of it changes "
        "nothing; older ids are forgotten (hourly). Senders replay within hours: GitHub's "
        "redeliveries and GitLab's and PagerDuty's retries all come well within a day.",
        json_schema_extra=_meta("webhooks.delivery_retention_days", "webhooks"),
    )
    webhooks_github_release_deployments: bool | list[str] = Field(
        False,
        description="GitHub `release` `published` (not a draft or pre-release) → a production "
        "deployment of the release's tag: `true` for every repository, or a list of repositories "
        "(`owner/name` or `name`); `false`: releases are ignored (deployments come from "
        "`deployment_status`).",
        json_schema_extra=_meta("webhooks.github_release_deployments", "webhooks"),
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
        description=(
            "Requests per minute allowed per token (or client address without one); a request "
            "that keeps the store busy more than 1 s counts one more per further 0.1 s. More "
            "gets 429 with Retry-After."
        ),
        json_schema_extra=_meta("server.rate_limit_per_minute", "API"),
    )
    server_max_report_periods: int = Field(
        400,
        gt=0,
        description=(
            "Most periods a report, dashboard page or HTML report served by the server may "
            "span (each period costs the engine a pass over the records); more gets 400 before "
            "any work."
        ),
        json_schema_extra=_meta("server.max_report_periods", "API, dashboard"),
    )
    server_max_report_cells: int = Field(
        100_000,
        gt=0,
        description=(
            "Most cells — periods × segments (the values of each `by` key multiplied; pages and "
            "the HTML report count teams + capabilities + services) — a report, page or HTML "
            "report served by the server may have; more gets 400 before any work."
        ),
        json_schema_extra=_meta("server.max_report_cells", "API, dashboard"),
    )
    server_read_connections: int = Field(
        4,
        gt=0,
        le=64,
        description=(
            "Store connections the server reads on side by side (reports, pages, explain); "
            "authentication and /healthz have one of their own, so they never wait for a report."
        ),
        json_schema_extra=_meta("server.read_connections", "serve"),
    )
    server_header_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's headers, from connecting (or from its "
            "previous response); a slower one is disconnected."
        ),
        json_schema_extra=_meta("server.header_timeout", "serve"),
    )
    server_access_log: bool = Field(
        False,
        description=(
            "Print one line per HTTP request (uvicorn's access log) to stderr. Off by default: "
            "with many small requests (webhooks) the line costs a sixth of the server's time "
            "per request; a reverse proxy usually logs them already."
        ),
        json_schema_extra=_meta("server.access_log", "serve"),
    )
    server_front_processes: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Processes that take the server's HTTP requests in front of the process holding the "
            "store: they read, check, parse and type ingest requests and webhooks on cores of "
            "their own. On 2 cores, 1 took batches of records a quarter faster and single events "
            "a fifth slower (docs/performance.md, HTTP fronts). 0: the store's process takes "
            "every request itself."
        ),
        json_schema_extra=_meta("server.front_processes", "serve"),
    )
    server_max_connections: int = Field(
        500,
        gt=0,
        description="Open connections the server accepts at once; beyond them it answers 503.",
        json_schema_extra=_meta("server.max_connections", "serve"),
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
        [],
        description=(
            "Addresses of the reverse proxies in front of the server: only from these are "
            "`X-Forwarded-For`/`X-Forwarded-Proto` (the client's address and scheme) and "
            "`server.auth_proxy_header` believed. Empty: no proxy is trusted."
        ),
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

    @field_validator("timezone", "ingest_timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name such as 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        memory_limit_bytes(value)  # raises ValueError saying what is wrong
        return value

    @field_validator("incident_link_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value != "unbounded" and not _DURATION.fullmatch(value):
            raise ValueError(f"{value!r} is not a duration such as '7d', '36h' or 'unbounded'")
        return value

    @field_validator("tier_year", mode="before")
    @classmethod
    def _year(cls, value: Any) -> Any:
        # the environment gives "2021", which a Literal of ints does not take by itself
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("production_environments", "failure_severities", "bot_actors")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values: Any) -> Any:
        """`definitions` fills every rule of its peer that is not given explicitly."""
        if not isinstance(values, dict):
            return values
        preset = PRESETS.get(str(values.get("definitions", "heatlens")), {})
        return {**preset, **values}

    @property
    def read_timezone(self) -> str:
        """The time zone in which ingest reads timestamps without offset."""
        return self.ingest_timezone or self.timezone

    @property
    def duckdb_memory_bytes(self) -> int:
        """`duckdb.memory_limit` in bytes (a share of RAM computed on this machine)."""
        return memory_limit_bytes(self.duckdb_memory_limit)

    @property
    def link_window(self) -> timedelta | None:
        """The incident link window, or None when unbounded."""
        if self.incident_link_window == "unbounded":
            return None
        match = _DURATION.fullmatch(self.incident_link_window)
        assert match is not None  # checked by the validator
        amount, unit = int(match[1]), match[2]
        return timedelta(**{_UNITS[unit]: amount})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (the init arguments) beat the environment, which beats the config file."""
        where = _SOURCES.get() or _Where()
        return (
            init_settings,
            _Environment(settings_cls, where.environ),
            _ConfigFile(settings_cls, where.config),
        )


# What each `definitions` preset sets (DESIGN §5 v2): the rules the peer applies. Anything not
# listed keeps heatlens's default; a setting given explicitly beats its preset. Peers give a tier
# to any value, and count only incidents (not rollbacks or hotfixes) as failures.
PRESETS: dict[str, dict[str, Any]] = {
    "heatlens": {},
    "devlake": {
        "incident_link_window": "unbounded",
        "quantile": "lower",
        "tier_year": 2021,
        "failure_from_remediation": False,
        "lead_time_start": "authored",
        "tier_min_n": 1,
    },
    "fourkeys": {
        "incident_link_window": "0m",
        "tier_year": 2021,  # Four Keys measures time to restore, the 2021 report's input
        "failure_from_remediation": False,
        "tier_min_n": 1,
    },
}

# `duckdb.memory_limit`: DuckDB's own units (it takes no share of RAM, hence the `%` form here)
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([KMGT]i?B)", re.IGNORECASE)
_SHARE = re.compile(r"(\d+(?:\.\d+)?) ?%")
_SIZE_UNITS = {
    f"{p}{'i' if binary else ''}b": (1024 if binary else 1000) ** (i + 1)
    for i, p in enumerate("kmgt")
    for binary in (False, True)
}
MIN_MEMORY_LIMIT = 128 * 1024**2  # below this DuckDB fails at simple queries, not spills


def machine_memory() -> int:
    """Bytes of RAM this process may use: the machine's, or its cgroup's limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        raise ValueError(
            "this system does not tell its RAM: give a size such as '8GB' instead of a share"
        ) from None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit():  # cgroup v2 says "max" when there is no limit
            total = min(total, int(text))
    return total


def memory_limit_bytes(value: str) -> int:
    """A `duckdb.memory_limit` value (`8GB`, `512MB`, `8GiB`, `50%`) in bytes; ValueError if it
    is none of those, or less than 128 MiB."""
    text = value.strip()
    if size := _SIZE.fullmatch(text):
        limit = int(float(size[1]) * _SIZE_UNITS[size[2].lower()])
    elif share := _SHARE.fullmatch(text):
        percent = float(share[1])
        if not 0 < percent <= 100:
            raise ValueError(f"{value!r}: a share of RAM must be above 0% and at most 100%")
        limit = int(machine_memory() * percent / 100)
    else:
        raise ValueError(
            f"{value!r} is not a memory size such as '8GB', '512MB', '8GiB' or a share of RAM "
            "such as '50%'"
        )
    if limit < MIN_MEMORY_LIMIT:
        raise ValueError(f"{value!r} is {limit:,} bytes: give at least 128MiB")
    return limit


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
                env=ENV_PREFIX + name.upper(),
                flag=extra["flag"] if isinstance(extra["flag"], str) else None,
                default=field.default,
                help=field.description or "",
                used_by=str(extra["used_by"]),
                secret="SecretStr" in str(field.annotation),
            )
        )
    return infos


@dataclass(frozen=True)
class _Where:
    """Where one `load_settings` call reads from: a config file (None: ./heatlens.toml if it
    exists) and an environment (None: os.environ)."""

    config: Path | None = None
    environ: Mapping[str, str] | None = None


# pydantic-settings builds its sources inside `Settings()`; this is how one call says which file
# and environment they read. A plain `Settings()` reads ./heatlens.toml and os.environ.
_SOURCES: ContextVar[_Where | None] = ContextVar("heatlens_settings_sources", default=None)

# Settings whose environment value is a TOML list or table; a list of names may also be written
# as `a, b`.
_COMMA_LISTS = {
    "production_environments",
    "server_trusted_proxies",
    "failure_severities",
    "bot_actors",
}


class _Environment(EnvSettingsSource):
    """`HEATLENS_*` variables from the given environment; lists and tables as TOML values."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        self._environ = os.environ if environ is None else environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """`["a", "b"]` or `{ k = "v" }` (TOML, so JSON lists work too), or `a, b` for names."""
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if field_name in _COMMA_LISTS:
                return [part.strip() for part in value.split(",")]
            return value  # validation then says what was expected


class _ConfigFile(InitSettingsSource):
    """The TOML config file, its tables (`[server]`) read as dotted keys (`server.…`)."""

    def __init__(self, settings_cls: type[BaseSettings], config: Path | None) -> None:
        path = (
            config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        )
        super().__init__(settings_cls, _read_config(path) if path is not None else {})


def _read_config(path: Path) -> dict[str, Any]:
    """The config file's values by field name; a missing file or unknown key is a ConfigError."""
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    infos = {info.toml: info for info in setting_infos()}
    values: dict[str, Any] = {}
    for key, value in _flatten(table, set(infos)).items():
        if key not in infos:
            known = ", ".join(sorted(infos))
            raise ConfigError(f"config file {path}: unknown setting {key!r} (known: {known})")
        values[infos[key].field] = value
    return values


def _flatten(table: dict[str, Any], keys: set[str], prefix: str = "") -> dict[str, Any]:
    """TOML tables → dotted keys, except for tables that are a setting's value."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = prefix + key
        if isinstance(value, dict) and dotted not in keys:
            flat.update(_flatten(value, keys, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def load_settings(
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from defaults, the config file, the environment and command-line overrides.

    `config` None means `./heatlens.toml` when it exists; `environ` None means `os.environ`.
    `overrides` maps field names to values given on the command line (None values are ignored).
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    token = _SOURCES.set(_Where(config, environ))
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise _blame(exc, config, given, os.environ if environ is None else environ) from None
    finally:
        _SOURCES.reset(token)


def _blame(
    exc: ValidationError, config: Path | None, given: dict[str, Any], environ: Mapping[str, str]
) -> ConfigError:
    """One line naming where the bad value came from — the flag, the environment variable or
    the config file (path and key) — by the precedence that picked it, and what is wrong."""
    first = exc.errors()[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else "?"
    found = next((i for i in setting_infos() if i.field == field), None)
    key = found.toml if found else field
    # a list entry or table key inside the value, numbered from 0 like every config entry
    key += "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] != "value_error":
        message += f" (got {first['input']!r})"
    env = {k.upper(): v for k, v in environ.items()}
    if field in given:
        where = f"{found.flag} {given[field]}" if found and found.flag else f"setting {key}"
    elif found is not None and found.env in env:
        where = f"environment variable {found.env} (setting {key})"
    else:
        path = config if config is not None else DEFAULT_CONFIG
        where = f"config file {path}: {key}" if path.exists() else f"setting {key}"
    return ConfigError(f"{where}: {message}")
