"""Settings: one declaration, loaded from file, environment and flags, all documented."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from heatlens.docs import PAGES
from heatlens.errors import ConfigError
from heatlens.settings import Settings, load_settings, setting_infos

DOCS = Path(__file__).resolve().parents[1] / "docs"
DESIGN_KEYS = {
    "store",
    "timezone",
    "production_environments",
    "incident_link_window",
    "quantile",
    "tier_year",
    "pseudonymise_key",
    "server.max_request_bytes",
    "server.rate_limit_per_minute",
    "sync",
}


def test_every_setting_of_design_is_declared() -> None:
    assert {i.toml for i in setting_infos()} >= DESIGN_KEYS


@pytest.mark.parametrize("info", setting_infos(), ids=lambda i: i.toml)
def test_every_setting_is_documented(info: object) -> None:
    page = (DOCS / "settings.md").read_text(encoding="utf-8")
    toml, env, help_ = info.toml, info.env, info.help  # type: ignore[attr-defined]
    assert help_, f"{toml} has no help text"
    assert f"| `{toml}` | `{env}` |" in page and help_ in page


@pytest.mark.parametrize("name", sorted(PAGES))
def test_generated_docs_are_current(name: str) -> None:
    assert (DOCS / name).read_text(encoding="utf-8") == PAGES[name](), (
        f"docs/{name} is stale: run `python -m heatlens.docs`"
    )


def test_defaults_match_design() -> None:
    s = load_settings(environ={})
    assert s.store == "duckdb:///heatlens.duckdb" and s.timezone == "UTC"
    assert s.production_environments == ["production", "prod"]
    assert s.link_window == timedelta(days=7) and s.quantile == "linear" and s.tier_year == 2023
    assert s.server_max_request_bytes == 10 * 1024 * 1024
    assert s.server_rate_limit_per_minute == 600 and s.pseudonymise_key is None


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    config = tmp_path / "heatlens.toml"
    config.write_text(
        'timezone = "Europe/Berlin"\nquantile = "lower"\ntier_year = 2021\n'
        'pseudonymise_key = "s3cr3t-pk"\n[server]\nmax_request_bytes = 1000\n'
        'trusted_proxies = ["10.0.0.1"]\n',
        encoding="utf-8",
    )
    env = {
        "HEATLENS_QUANTILE": "linear",
        "HEATLENS_INCIDENT_LINK_WINDOW": "unbounded",
        "HEATLENS_PRODUCTION_ENVIRONMENTS": '["Live"]',
    }
    s = load_settings(config, overrides={"timezone": "Asia/Tokyo"}, environ=env)
    assert s.timezone == "Asia/Tokyo"  # flag beats file
    assert s.quantile == "linear"  # env beats file
    assert s.tier_year == 2021 and s.server_max_request_bytes == 1000  # file beats default
    assert s.link_window is None and s.production_environments == ["live"]
    assert s.server_trusted_proxies == ["10.0.0.1"]  # a list under a table
    assert s.pseudonymise_key is not None and s.pseudonymise_key.get_secret_value() == "s3cr3t-pk"
    assert "s3cr3t" not in repr(s)  # secrets never printed


# One value per setting, as written in the environment, and what it must load as.
FROM_ENV = {
    "store": ("duckdb:///elsewhere.duckdb", "duckdb:///elsewhere.duckdb"),
    "duckdb_memory_limit": ("8GB", "8GB"),
    "timezone": ("Europe/Paris", "Europe/Paris"),
    "production_environments": ("Live, Prod-EU", ["live", "prod-eu"]),
    "incident_link_window": ("36h", "36h"),
    "quantile": ("lower", "lower"),
    "tier_year": ("2021", 2021),
    "pseudonymise_key": ("k3y", "k3y"),
    "server_max_request_bytes": ("2048", 2048),
    "server_max_upload_bytes": ("4096", 4096),
    "server_rate_limit_per_minute": ("42", 42),
    "server_max_report_periods": ("50", 50),
    "server_max_report_cells": ("5000", 5000),
    "server_read_connections": ("2", 2),
    "server_header_timeout": ("2.5", 2.5),
    "server_access_log": ("true", True),
    "server_max_connections": ("64", 64),
    "server_front_processes": ("3", 3),
    "server_auth_proxy_header": ("X-Forwarded-User", "X-Forwarded-User"),
    "server_trusted_proxies": ('["10.0.0.1"]', ["10.0.0.1"]),
    "server_session_hours": ("1.5", 1.5),
    "sync": ('[{ source = "git", every = "1h" }]', [{"source": "git", "every": "1h"}]),
    "targets": ('[{ metric = "m", value = 1 }]', [{"metric": "m", "value": 1}]),
    "definitions": ("devlake", "devlake"),
    "failure_from_remediation": ("false", False),
    "failure_severities": ("SEV-1, sev-2", ["sev-1", "sev-2"]),
    "tier_min_n": ("3", 3),
    "lead_time_start": ("authored", "authored"),
    "bot_actors": ("*[bot], ci-*", ["*[bot]", "ci-*"]),
    "ingest_timezone": ("Europe/Berlin", "Europe/Berlin"),
    "ci_capability": ("github-actions", "github-actions"),
    "incident_label": ("outage", "outage"),
    "service_map": ('{ "acme/api" = "api" }', {"acme/api": "api"}),
    "webhooks_github_secret": ("gh-s3cret", "gh-s3cret"),
    "webhooks_gitlab_token": ("gl-t0ken", "gl-t0ken"),
    "webhooks_pagerduty_secret": ("pd-s3cret", "pd-s3cret"),
    "webhooks_delivery_retention_days": ("30", 30.0),
    "webhooks_github_release_deployments": ('["acme/api"]', ["acme/api"]),
}


def test_every_setting_has_an_environment_example() -> None:
    assert set(FROM_ENV) == {i.field for i in setting_infos()}


@pytest.mark.parametrize("info", setting_infos(), ids=lambda i: i.env)
def test_the_documented_environment_variable_is_the_one_read(info: object) -> None:
    field, env = info.field, info.env  # type: ignore[attr-defined]
    raw, expected = FROM_ENV[field]
    value = getattr(load_settings(environ={env: raw}), field)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    assert value == expected and value != Settings.model_fields[field].default


def test_environ_given_replaces_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEATLENS_TIMEZONE", "Asia/Tokyo")
    assert load_settings(environ={}).timezone == "UTC"
    assert load_settings().timezone == "Asia/Tokyo"


def test_a_bad_environment_value_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as bad:
        load_settings(environ={"HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE": "lots"})
    assert str(bad.value) == (
        "environment variable HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE (setting "
        "server.rate_limit_per_minute): Input should be a valid integer, unable to parse string "
        "as an integer (got 'lots')"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'timezone = "Mars/Olympus"',
            ": timezone: unknown time zone 'Mars/Olympus' (expected an IANA name",
        ),
        ('quantile = "median"', ": quantile: Input should be 'linear' or 'lower' (got 'median')"),
        ('incident_link_window = "a week"', ": incident_link_window: 'a week' is not a duration"),
        ("colour = 1", "unknown setting 'colour'"),
        ("[server]\nmax_request_bytes = 0", ": server.max_request_bytes: "),
        ('production_environments = ["prod", 3]', ": production_environments[1]: Input should"),
        ("timezone = ", "config file"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "heatlens.toml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_settings(config, environ={})
    assert str(bad.value).startswith(f"config file {config}")
    assert message in str(bad.value) and "HEATLENS_" not in str(bad.value)


def test_a_bad_value_is_blamed_on_the_source_that_gave_it(tmp_path: Path) -> None:
    """The environment beats the file: a bad zone in the environment is the environment's,
    a bad zone in the file (with a good one in the environment) is never read."""
    config = tmp_path / "heatlens.toml"
    config.write_text('timezone = "Mars/Olympus"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_settings(config, environ={"HEATLENS_TIMEZONE": "Bad/Zone"})
    assert str(bad.value).startswith(
        "environment variable HEATLENS_TIMEZONE (setting timezone): unknown time zone 'Bad/Zone'"
    )
    assert load_settings(config, environ={"HEATLENS_TIMEZONE": "Asia/Tokyo"}).timezone == (
        "Asia/Tokyo"
    )
    with pytest.raises(ConfigError) as flag:
        load_settings(config, overrides={"store": "x", "timezone": "Nowhere/Else"}, environ={})
    assert "Nowhere/Else" in str(flag.value) and "config file" not in str(flag.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError):
        Settings().timezone = "x"  # type: ignore[misc]


def test_heatlens_toml_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heatlens.toml").write_text("[server]\nsession_hours = 2.5\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).server_session_hours == 2.5
