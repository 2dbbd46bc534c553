"""Tables of the store and their forward migrations, written once for every SQL dialect we write to.

The record tables follow the data model (heatlens.model) column for column, plus `source` and
`ingested_at`. Besides them the store keeps `meta` (schema and data versions), `ingest_error`,
`audit_log`, `sync_state`, `api_token`, `survey_link`, `web_session` and `rate_window`.
"""

from __future__ import annotations

from collections.abc import Callable

from heatlens.model import RECORD_TYPES, Kind, RecordType

Dialect = str  # "duckdb" | "postgres"

_TYPES: dict[Kind, dict[Dialect, str]] = {
    Kind.STRING: {"duckdb": "VARCHAR", "postgres": "TEXT"},
    Kind.ENUM: {"duckdb": "VARCHAR", "postgres": "TEXT"},
    Kind.TIMESTAMP: {"duckdb": "TIMESTAMPTZ", "postgres": "TIMESTAMPTZ"},
    Kind.NUMBER: {"duckdb": "DOUBLE", "postgres": "DOUBLE PRECISION"},
    Kind.INTEGER: {"duckdb": "BIGINT", "postgres": "BIGINT"},
    Kind.BOOLEAN: {"duckdb": "BOOLEAN", "postgres": "BOOLEAN"},
    Kind.STRING_LIST: {"duckdb": "VARCHAR[]", "postgres": "TEXT[]"},
    # JSON text: readable by every engine, compared exactly by upserts.
    Kind.OBJECT: {"duckdb": "VARCHAR", "postgres": "TEXT"},
    Kind.QUESTIONS: {"duckdb": "VARCHAR", "postgres": "TEXT"},
}


def q(name: str) -> str:
    """Quote an identifier (fields such as `from` and `to` are reserved words)."""
    return '"' + name.replace('"', '""') + '"'


def column_type(kind: Kind, dialect: Dialect) -> str:
    """SQL type of a field of this kind."""
    return _TYPES[kind][dialect]


def record_columns(rtype: RecordType) -> list[str]:
    """Stored columns of a record table, in order."""
    return [*rtype.field_names, "source", "ingested_at"]


# Fields the data model gained after schema v1, by schema version and table: v1 creates tables
# without them and a later migration adds them, so a store created by any version ends with the
# same tables.
_ADDED: dict[int, dict[str, tuple[str, ...]]] = {
    2: {"team": ("attributes",), "service": ("attributes",)},
    3: {"usage": ("run", "attempt")},
    4: {"change": ("title",)},
    5: {"survey": ("continuous",)},
}


def _record_table_ddl(rtype: RecordType, dialect: Dialect) -> str:
    later = {name for added in _ADDED.values() for name in added.get(rtype.table, ())}
    cols = [
        f"{q(f.name)} {column_type(f.kind, dialect)}" for f in rtype.fields if f.name not in later
    ]
    cols += [
        "source TEXT NOT NULL" if dialect == "postgres" else "source VARCHAR NOT NULL",
        "ingested_at TIMESTAMPTZ NOT NULL",
    ]
    # A primary key is kept on Postgres; on DuckDB its index would slow bulk loads several-fold
    # and the upsert already guarantees one row per id.
    if dialect == "postgres":
        cols.append("PRIMARY KEY (id)")
    return f"CREATE TABLE {q(rtype.table)} ({', '.join(cols)})"


def _v1(dialect: Dialect) -> list[str]:
    text = "TEXT" if dialect == "postgres" else "VARCHAR"
    text_list = "TEXT[]" if dialect == "postgres" else "VARCHAR[]"
    return [
        *(_record_table_ddl(t, dialect) for t in RECORD_TYPES),
        f'CREATE TABLE ingest_error ("at" TIMESTAMPTZ NOT NULL, source {text} NOT NULL, '
        f"location {text}, type {text}, field {text}, value {text}, message {text} NOT NULL)",
        f'CREATE TABLE audit_log ("at" TIMESTAMPTZ NOT NULL, action {text} NOT NULL, '
        f"detail {text} NOT NULL)",
        f"CREATE TABLE sync_state (name {text} PRIMARY KEY, state {text} NOT NULL, "
        "updated_at TIMESTAMPTZ NOT NULL)",
        f"CREATE TABLE api_token (id {text} PRIMARY KEY, name {text}, scope {text} NOT NULL, "
        f"secret_hash {text} NOT NULL, teams {text_list}, created_at TIMESTAMPTZ NOT NULL, "
        "last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ)",
    ]


def _added(version: int, dialect: Dialect) -> list[str]:
    by_name = {t.table: t for t in RECORD_TYPES}
    return [
        f"ALTER TABLE {q(table)} ADD COLUMN {q(name)} "
        + column_type(next(f.kind for f in by_name[table].fields if f.name == name), dialect)
        for table, names in _ADDED[version].items()
        for name in names
    ]


def _v2(dialect: Dialect) -> list[str]:
    """Teams and services gain `attributes` (a free-form object, e.g. Backstage's lifecycle)."""
    return _added(2, dialect)


def _v3(dialect: Dialect) -> list[str]:
    """Usage gains `run` and `attempt` (one logical task retried; CI re-runs)."""
    return _added(3, dialect)


def _v4(dialect: Dialect) -> list[str]:
    """Changes gain `title` (the commit subject, shown beside lead times)."""
    return _added(4, dialect)


def _v5(dialect: Dialect) -> list[str]:
    """Surveys gain `continuous` (micro-surveys); `survey_link` keeps the single-use survey links
    (heatlens.store.survey_links): only a hash of each secret, its survey and team, and whether
    it was used — never when, nor which response it gave."""
    text = "TEXT" if dialect == "postgres" else "VARCHAR"
    return [
        *_added(5, dialect),
        f"CREATE TABLE survey_link (secret_hash {text} PRIMARY KEY, survey {text} NOT NULL, "
        f"team {text}, batch {text} NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
        "used BOOLEAN NOT NULL)",
    ]


def _v6(dialect: Dialect) -> list[str]:
    """What several servers on one store share (heatlens.store.web_state): browser sessions,
    kept as the SHA-256 of their id with their token's id and end, and rate-limit windows, one
    row per key with the times and costs of its counted requests in the last minute."""
    text = "TEXT" if dialect == "postgres" else "VARCHAR"
    double = "DOUBLE PRECISION" if dialect == "postgres" else "DOUBLE"
    return [
        f"CREATE TABLE web_session (id_hash {text} PRIMARY KEY, token_id {text} NOT NULL, "
        "expires_at TIMESTAMPTZ NOT NULL)",
        f"CREATE TABLE rate_window (key {text} PRIMARY KEY, hits {double}[] NOT NULL, "
        "units BIGINT[] NOT NULL)",
    ]


def _v7(dialect: Dialect) -> list[str]:
    """A webhook delivery's id row is now its count (heatlens.store.deliveries): each source's
    counters row (`webhook:<source>`) keeps only the deliveries without one, so the deliveries
    whose id rows it had counted as well are taken out of it (the ignored ones stay: old id rows
    do not say they stored nothing, so they are counted as taken)."""
    ids = (
        "(SELECT count(*) FROM sync_state AS d WHERE d.name >= 'webhook-delivery:' || "
        "substr(sync_state.name, 9) || ':' AND d.name < 'webhook-delivery:' || "
        "substr(sync_state.name, 9) || ';')"
    )
    if dialect == "postgres":
        state = (
            "(state::jsonb || jsonb_build_object('deliveries', "
            f"coalesce((state::jsonb ->> 'deliveries')::bigint, 0) - {ids}))::text"
        )
    else:
        state = (
            "CAST(json_merge_patch(state, json_object('deliveries', "
            f"coalesce(CAST(json_extract_string(state, '$.deliveries') AS BIGINT), 0) - {ids}))"
            " AS VARCHAR)"
        )
    return [f"UPDATE sync_state SET state = {state} WHERE name >= 'webhook:' AND name < 'webhook;'"]


# Forward migrations, in order: version N is reached by running MIGRATIONS[N - 1].
# Never edit a released migration; append a new one.
MIGRATIONS: list[Callable[[Dialect], list[str]]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
SCHEMA_VERSION = len(MIGRATIONS)
