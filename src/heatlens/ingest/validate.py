"""Validating a raw input, whole, in the staging connection, and explaining its bad rows one by one.

For each record type present in an input, one query casts every field and evaluates every rule
(heatlens.ingest.rules) over all rows at once, writing a stage table with a `__bad` flag. Only when
some row is bad does a second query, restricted to the bad rows, say which rule each one broke.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from heatlens.ingest.formats import RawInput
from heatlens.ingest.rules import (
    UNKNOWN,
    Check,
    Column,
    checks,
    derived_id,
    final_select,
    json_fields,
    lit,
    typed_select,
)
from heatlens.model import BY_NAME, TYPE_NAMES, RecordType
from heatlens.store.schema import q


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input record: where, which field, the value, what was expected."""

    input: str
    unit: str
    line: int | None
    type: str | None
    field: str | None
    value: str | None
    expected: str
    kind: str = "invalid"  # "invalid" | "missing" | "unknown" | "type" | "json"

    @property
    def location(self) -> str:
        return f"{self.input} {self.unit} {self.line}" if self.line is not None else self.input

    @property
    def message(self) -> str:
        """The problem without its location."""
        subject = f"{self.type}.{self.field}"
        if self.kind == "missing":
            return f"{subject} is missing: {self.expected}"
        if self.kind == "unknown":
            return f"{subject}: unknown field ({self.type} has {self.expected})"
        if self.kind == "type":
            got = "type is missing" if self.value is None else f"type = {self.value}"
            return f"{got}: expected one of {self.expected}"
        if self.kind == "json":
            return f"expected {self.expected}"
        return f"{subject} = {self.value}: expected {self.expected}"

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class StagedInput:
    """A validated input: one stage table per record type, plus what was wrong."""

    raw: RawInput
    stages: dict[str, str]  # type name → stage table
    bad_rows: int
    problems: list[Problem]  # the first `limit` bad rows' problems, in input order


_KNOWN_TYPES = ", ".join(TYPE_NAMES)


def validate(
    con: duckdb.DuckDBPyConnection,
    raw: RawInput,
    *,
    tz: str,
    prefix: str,
    default_type: str | None = None,
    limit: int | None = 50,
) -> StagedInput:
    """Validate `raw` into stage tables `<prefix>_<type>`; explain up to `limit` bad rows."""
    source = _typed_source(con, raw, default_type, prefix)
    # the types present and the envelope's bad rows in one pass; explained only when there are
    found = con.execute(
        f"SELECT list(DISTINCT __type) FILTER (WHERE __ok), count(*) FILTER (WHERE NOT __ok) "
        f"FROM {source}"
    ).fetchone()
    types, not_ok = (found[0] or [], int(found[1])) if found else ([], 0)
    problems = _envelope_problems(con, raw, source, limit) if not_ok else []
    bad = len(problems) if limit is None else not_ok
    present = [t for t in types if t in BY_NAME]
    stages: dict[str, str] = {}
    for name in sorted(present, key=TYPE_NAMES.index):
        rtype = BY_NAME[name]
        cols, extra = _columns(raw, rtype)
        rule_list = checks(rtype, cols, extra)
        stage = f"{prefix}_{name}"
        typed = _typed_cte(rtype, cols, extra, source, tz, raw)
        any_bad = " OR ".join(f"({c.bad})" for c in rule_list) or "FALSE"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage} AS WITH {typed} "
            f"SELECT __line, {final_select(rtype)}, ({any_bad}) AS __bad FROM derived"
        )
        stages[name] = stage
        n_bad = con.execute(f"SELECT count(*) FROM {stage} WHERE __bad").fetchone()
        if n_bad and n_bad[0]:
            bad += int(n_bad[0])
            problems += _explain(con, raw, rtype, cols, extra, rule_list, source, stage, tz, limit)
    problems.sort(key=lambda p: p.line or 0)
    return StagedInput(raw, stages, bad, problems if limit is None else problems[:limit])


def _typed_source(
    con: duckdb.DuckDBPyConnection, raw: RawInput, default_type: str | None, prefix: str
) -> str:
    """A view over the raw input with `__type` and `__ok` (a well-formed record of a known type).

    For JSON input it is a table: each text is parsed once here, not again by every query after.
    """
    view = f"{prefix}_src"
    known = ", ".join(lit(t) for t in TYPE_NAMES)
    if raw.shape == "json":
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT __line, __j, "
            f"__j IS NOT NULL AS __json_ok, __is_object, __type, "
            f"coalesce(__is_object AND __type IN ({known}), FALSE) AS __ok "
            f"FROM (SELECT __line, __j, coalesce(json_type(__j) = 'OBJECT', FALSE) AS __is_object, "
            f"__j ->> 'type' AS __type "
            f"FROM (SELECT __line, TRY_CAST(__text AS JSON) AS __j FROM {raw.table}))"
        )
        return view
    if "type" in raw.columns:
        fallback = lit(default_type) if default_type else "NULL"
        type_expr = f"coalesce(CAST({q('type')} AS VARCHAR), {fallback})"
    elif default_type:
        type_expr = lit(default_type)
    else:
        from heatlens.errors import InputError

        raise InputError(
            f"{raw.name}: no `type` column: add one, or pass --type with one of {_KNOWN_TYPES}"
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT *, {type_expr} AS __type, "
        f"coalesce({type_expr} IN ({known}), FALSE) AS __ok FROM {raw.table}"
    )
    return view


def _envelope_problems(
    con: duckdb.DuckDBPyConnection, raw: RawInput, source: str, limit: int | None
) -> list[Problem]:
    """Rows that are not JSON, not objects, or of no known type."""
    cap = f"LIMIT {limit}" if limit is not None else ""
    if raw.shape == "json":
        rows = con.execute(
            f"SELECT __line, __json_ok, __is_object, CAST(__j -> 'type' AS VARCHAR), "
            f"left(__text, 80) FROM {source} JOIN {raw.table} USING (__line) "
            f"WHERE NOT __ok ORDER BY __line {cap}"
        ).fetchall()
    else:
        rows = con.execute(
            f"SELECT __line, TRUE, TRUE, __type, NULL FROM {source} WHERE NOT __ok "
            f"ORDER BY __line {cap}"
        ).fetchall()
    out = []
    for line, json_ok, is_object, type_value, text in rows:
        if not json_ok:
            out.append(
                Problem(
                    raw.name,
                    raw.unit,
                    line,
                    None,
                    None,
                    None,
                    f"a JSON object, got invalid JSON {text!r}",
                    "json",
                )
            )
        elif not is_object:
            out.append(
                Problem(
                    raw.name,
                    raw.unit,
                    line,
                    None,
                    None,
                    None,
                    f"a JSON object, got {text!r}",
                    "json",
                )
            )
        else:
            out.append(
                Problem(raw.name, raw.unit, line, None, "type", type_value, _KNOWN_TYPES, "type")
            )
    return out


def _columns(raw: RawInput, rtype: RecordType) -> tuple[dict[str, Column], list[Column]]:
    if raw.shape == "json":
        return {f: Column("json", f, index=i) for i, f in enumerate(rtype.field_names, 1)}, []
    cols = {
        f: Column("column", f, raw.columns[f]) if f in raw.columns else Column("absent", f)
        for f in rtype.field_names
    }
    extra = [
        Column("column", c, t) for c, t in raw.columns.items() if c not in cols and c != "type"
    ]
    return cols, extra


def _typed_cte(
    rtype: RecordType,
    cols: dict[str, Column],
    extra_cols: list[Column],
    source: str,
    tz: str,
    raw: RawInput,
    where: str = "",
    shown: list[str] | None = None,
) -> str:
    """CTEs `typed` (field values, presence flags) and `derived` (plus the derived id)."""
    extra = "".join(f", {c.present} AS {q('__p_' + c.name)}" for c in extra_cols)
    rows = f"SELECT * FROM {source} WHERE __ok AND __type = {lit(rtype.name)} {where}"
    if raw.shape == "json":
        allowed = ", ".join(lit(k) for k in ("type", *rtype.field_names))
        extra += f", list_filter(json_keys(__j), k -> k NOT IN ({allowed})) AS {UNKNOWN}"
        rows = f"SELECT *, {json_fields(rtype.field_names)} FROM ({rows})"
    if shown:
        extra += ", " + ", ".join(f"{s} AS __s{i}" for i, s in enumerate(shown))
    return (
        f"picked AS ({rows}), "
        f"typed AS (SELECT __line, {typed_select(rtype, cols, tz)}{extra} FROM picked), "
        f"derived AS (SELECT *, {derived_id(rtype)} AS __derived_id FROM typed)"
    )


def _explain(
    con: duckdb.DuckDBPyConnection,
    raw: RawInput,
    rtype: RecordType,
    cols: dict[str, Column],
    extra_cols: list[Column],
    rule_list: list[Check],
    source: str,
    stage: str,
    tz: str,
    limit: int | None,
) -> list[Problem]:
    """Which rule each bad row broke, for the first `limit` bad rows of this type."""
    rules = list(rule_list)
    cap = f"LIMIT {limit}" if limit is not None else ""
    where = f"AND __line IN (SELECT __line FROM {stage} WHERE __bad ORDER BY __line {cap})"
    typed = _typed_cte(rtype, cols, extra_cols, source, tz, raw, where, [r.shown for r in rules])
    flags = ", ".join(f"({r.bad})" for r in rules)
    shown = ", ".join(f"__s{i}" for i in range(len(rules)))
    rows = con.execute(
        f"WITH {typed} SELECT __line, [{flags}], [{shown}] FROM derived ORDER BY __line"
    ).fetchall()
    out: list[Problem] = []
    for line, hits, values in rows:
        for rule, hit, value in zip(rules, hits, values, strict=True):
            if hit:
                field = rule.field if rule.field != UNKNOWN else value
                out.append(
                    Problem(
                        raw.name,
                        raw.unit,
                        line,
                        rtype.name,
                        field,
                        None if rule.kind == "unknown" else value,
                        rule.expected,
                        rule.kind,
                    )
                )
    return out
