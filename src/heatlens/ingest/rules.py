"""Validation rules of DESIGN §3, in one place, as SQL run by DuckDB over a whole input at once.

Each input is first read into a *raw* table in the staging connection, in one of two shapes:
JSON (one JSON object per row, column `__j`) or columns (one column per field, native or text
types). For every field this module builds three SQL expressions: whether the input holds a value,
the typed value (NULL when the value is invalid), and the value as the user wrote it (for messages).
A field is invalid exactly when it holds a value whose typed value is NULL, or when it is
required and missing; a few rules span fields (`score` by `kind`, derived ids). Files and API
requests all pass through here, so they share one set of rules and one error corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatlens.model import SCORE_RANGES, SURVEY_KINDS, Field, Kind, RecordType
from heatlens.store.schema import q

TS_RANGE = ("1970-01-01", "2100-01-01")
_OFFSET = r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)$"
_INTEGER = r"^\s*[+-]?\d+\s*$"
_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
)
_INTEGERS = _NUMERIC[:9]


def lit(value: object) -> str:
    """A SQL literal for a str, int, float or bool."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def expected(field: Field) -> str:
    """What a valid value of this field looks like, as told to the user."""
    kind = field.kind
    if kind is Kind.STRING:
        return "a non-empty string" if field.required else "a string"
    if kind is Kind.ENUM:
        return "one of " + ", ".join(field.choices)
    if kind is Kind.TIMESTAMP:
        return (
            f"an ISO 8601 timestamp between {TS_RANGE[0][:4]} and {TS_RANGE[1][:4]}, "
            "e.g. 2026-03-02T10:15:00Z"
        )
    if kind is Kind.NUMBER:
        bound = f" ≥ {field.minimum:g}" if field.minimum is not None else ""
        return f"a finite number{bound}"
    if kind is Kind.INTEGER:
        bound = f" ≥ {field.minimum:g}" if field.minimum is not None else ""
        return f"an integer{bound}"
    if kind is Kind.BOOLEAN:
        return "true or false"
    if kind is Kind.STRING_LIST:
        return "a list of strings"
    if kind is Kind.OBJECT:
        return "a JSON object"
    return "a list of questions, each an object with a string `id` and a `kind` in " + ", ".join(
        SURVEY_KINDS
    )


@dataclass(frozen=True)
class Column:
    """Where a field's raw value comes from: a key of `__j`, a column, or nowhere.

    A JSON field is read from `__v`, the list of every field's JSON value extracted from `__j`
    in one pass (`json_fields`): each rule then parses a small value, not the whole record again.
    """

    shape: str  # "json" | "column" | "absent"
    name: str
    ctype: str = "VARCHAR"  # DuckDB type of a column
    index: int = 0  # a JSON field's 1-based position in `__v`

    @property
    def raw(self) -> str:
        if self.shape == "json":
            return f"__v[{self.index}]"
        return q(self.name) if self.shape == "column" else "NULL"

    @property
    def present(self) -> str:
        if self.shape == "json":
            return f"coalesce(json_type({self.raw}) <> 'NULL', FALSE)"
        return f"({q(self.name)} IS NOT NULL)" if self.shape == "column" else "FALSE"

    @property
    def shown(self) -> str:
        """The value as written, for messages."""
        return f"CAST({self.raw} AS VARCHAR)" if self.shape != "absent" else "NULL"

    @property
    def text(self) -> str | None:
        """SQL for the value as text when the input holds text, else None."""
        if self.shape == "json":
            return f"({self.raw} ->> '$')"
        if self.shape == "column" and self.ctype == "VARCHAR":
            return q(self.name)
        return None

    def json_type_is(self, *types: str) -> str:
        return f"json_type({self.raw}) IN ({', '.join(lit(t) for t in types)})"


def json_fields(names: tuple[str, ...]) -> str:
    """SQL for `__v`: the JSON values of these keys of `__j` (NULL when absent), parsed once."""
    paths = ", ".join(lit('$."' + n + '"') for n in names)
    return f"json_extract(__j, [{paths}]) AS __v"


def _parse_timestamp(text: str, tz: str) -> str:
    aware = f"TRY_CAST({text} AS TIMESTAMPTZ)"
    naive = f"timezone({lit(tz)}, TRY_CAST({text} AS TIMESTAMP))"
    return f"CASE WHEN regexp_matches({text}, {lit(_OFFSET)}) THEN {aware} ELSE {naive} END"


def _json_text_value(text: str, json_kind: str, element_ok: str | None = None) -> str:
    """Typed value of JSON held as text: normalised JSON text (or a list) when of the right kind."""
    # TRY_CAST is NULL exactly when json_valid is false: the text is parsed once, not twice
    # (json_valid, then the cast) — a tenth of a bulk load's validation
    parsed = f"TRY_CAST({text} AS JSON)"
    ok = f"json_type({parsed}) = {lit(json_kind)}"
    if element_ok:
        ok += (
            f" AND coalesce(list_bool_and(list_transform(json_extract({parsed}, '$[*]'), "
            f"x -> coalesce({element_ok}, FALSE))), TRUE)"
        )
    return f"CASE WHEN {ok} THEN {parsed} END"


_QUESTION_OK = (
    "json_type(x) = 'OBJECT' AND json_type(x -> 'id') = 'VARCHAR' AND "
    f"(x ->> 'kind') IN ({', '.join(lit(k) for k in SURVEY_KINDS)})"
)


def typed_value(field: Field, col: Column, tz: str) -> str:
    """SQL for the field's typed value: NULL when missing or invalid."""
    kind, raw, text = field.kind, col.raw, col.text
    if col.shape == "absent":
        return "NULL"
    json = col.shape == "json"
    if kind in (Kind.STRING, Kind.ENUM):
        value = (
            f"CASE WHEN {col.json_type_is('VARCHAR')} THEN {text} END" if json else (text or "NULL")
        )
        if kind is Kind.ENUM:
            value = (
                f"CASE WHEN {value} IN ({', '.join(lit(c) for c in field.choices)}) "
                f"THEN {value} END"
            )
        elif field.required:
            value = f"nullif({value}, '')"
        return value
    if kind is Kind.TIMESTAMP:
        if json or col.ctype == "VARCHAR":
            value = _parse_timestamp(text or "NULL", tz)
            if json:
                value = f"CASE WHEN {col.json_type_is('VARCHAR')} THEN {value} END"
        elif col.ctype.startswith("TIMESTAMP WITH TIME ZONE"):
            value = raw
        elif col.ctype.startswith("TIMESTAMP") or col.ctype == "DATE":
            value = f"timezone({lit(tz)}, CAST({raw} AS TIMESTAMP))"
        else:
            return "CAST(NULL AS TIMESTAMPTZ)"
        return (
            f"CASE WHEN {value} >= TIMESTAMPTZ '{TS_RANGE[0]} 00:00:00+00' AND {value} < "
            f"TIMESTAMPTZ '{TS_RANGE[1]} 00:00:00+00' THEN {value} END"
        )
    if kind is Kind.NUMBER:
        if json:
            value = (
                f"CASE WHEN {col.json_type_is('BIGINT', 'UBIGINT', 'DOUBLE')} "
                f"THEN TRY_CAST({text} AS DOUBLE) END"
            )
        elif col.ctype in _NUMERIC or col.ctype.startswith("DECIMAL"):
            value = f"CAST({raw} AS DOUBLE)"
        elif text:
            value = f"TRY_CAST({text} AS DOUBLE)"
        else:
            return "CAST(NULL AS DOUBLE)"
        low = f" AND {value} >= {field.minimum!r}" if field.minimum is not None else ""
        return f"CASE WHEN isfinite({value}){low} THEN {value} END"
    if kind is Kind.INTEGER:
        if json:
            value = (
                f"CASE WHEN {col.json_type_is('BIGINT', 'UBIGINT')} "
                f"THEN TRY_CAST({text} AS BIGINT) END"
            )
        elif col.ctype in _INTEGERS:
            value = f"TRY_CAST({raw} AS BIGINT)"
        elif col.ctype in ("FLOAT", "DOUBLE", "REAL"):
            value = f"CASE WHEN {raw} = round({raw}) THEN TRY_CAST({raw} AS BIGINT) END"
        elif text:
            value = (
                f"CASE WHEN regexp_matches({text}, {lit(_INTEGER)}) "
                f"THEN TRY_CAST(trim({text}) AS BIGINT) END"
            )
        else:
            return "CAST(NULL AS BIGINT)"
        bounds = [
            f"{value} >= {int(field.minimum)}" if field.minimum is not None else "",
            f"{value} <= {int(field.maximum)}" if field.maximum is not None else "",
        ]
        cond = " AND ".join(b for b in bounds if b)
        return f"CASE WHEN {cond} THEN {value} END" if cond else value
    if kind is Kind.BOOLEAN:
        if json:
            return f"CASE WHEN {col.json_type_is('BOOLEAN')} THEN CAST({text} AS BOOLEAN) END"
        if col.ctype == "BOOLEAN":
            return raw
        if text:
            return (
                f"CASE lower(trim({text})) WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE "
                "WHEN '1' THEN TRUE WHEN '0' THEN FALSE END"
            )
        return "CAST(NULL AS BOOLEAN)"
    if kind is Kind.STRING_LIST:
        element_ok = "json_type(x) = 'VARCHAR'"
        if col.ctype == "VARCHAR[]" and not json:
            return raw
        source = f"CAST({raw} AS VARCHAR)" if json else text
        if source is None:
            return "CAST(NULL AS VARCHAR[])"
        return f"CAST({_json_text_value(source, 'ARRAY', element_ok)} AS VARCHAR[])"
    # OBJECT and QUESTIONS are kept as normalised JSON text
    json_kind = "OBJECT" if kind is Kind.OBJECT else "ARRAY"
    item_ok = _QUESTION_OK if kind is Kind.QUESTIONS else None
    if json or col.ctype == "VARCHAR" or col.ctype == "JSON":
        source = f"CAST({raw} AS VARCHAR)"
    elif col.ctype.startswith(("STRUCT", "MAP")) or col.ctype.endswith("[]"):
        source = f"CAST(to_json({raw}) AS VARCHAR)"
    else:
        return "CAST(NULL AS VARCHAR)"
    return f"CAST({_json_text_value(source, json_kind, item_ok)} AS VARCHAR)"


@dataclass(frozen=True)
class Check:
    """One rule over a typed row: `bad` is SQL true when the row breaks it."""

    field: str
    bad: str
    expected: str
    shown: str  # SQL for the offending value as written
    kind: str = "invalid"  # "invalid" | "missing" | "unknown"


def checks(rtype: RecordType, cols: dict[str, Column], extra_columns: list[Column]) -> list[Check]:
    """Every rule a record of `rtype` must pass, over the typed row (see `typed_select`)."""
    out: list[Check] = []
    for f in rtype.fields:
        col = cols[f.name]
        if f.required:
            out.append(Check(f.name, f"NOT {_p(f.name)}", "required", "NULL", "missing"))
        out.append(Check(f.name, f"{_p(f.name)} AND {q(f.name)} IS NULL", expected(f), col.shown))
    if rtype.name == "survey_response":
        for kind, (low, high) in SCORE_RANGES.items():
            out.append(
                Check(
                    "score",
                    f"kind = {lit(kind)} AND {q('score')} IS NOT NULL AND "
                    f"{q('score')} NOT BETWEEN {low} AND {high}",
                    f"an integer from {low} to {high} for a {kind} answer",
                    cols["score"].shown,
                )
            )
        out.append(
            Check(
                "score",
                f"kind IN ('csat', 'nps', 'likert') AND NOT {_p('score')}",
                "required unless kind is text",
                "NULL",
                "missing",
            )
        )
    if rtype.id_from:
        out.append(
            Check(
                "id",
                f"{_p('id')} AND {q('id')} IS NOT NULL AND {q('id')} <> __derived_id",
                f"{'/'.join(rtype.id_from)} (or no id)",
                cols["id"].shown,
            )
        )
    fields = ", ".join(rtype.field_names)
    for col in extra_columns:
        out.append(Check(col.name, _p(col.name), fields, col.shown, "unknown"))
    if all(c.shape == "json" for c in cols.values()):
        out.append(
            Check(
                UNKNOWN,
                f"len({UNKNOWN}) > 0",
                fields,
                f"array_to_string({UNKNOWN}, ', ')",
                "unknown",
            )
        )
    return out


# JSON records: the keys that are neither `type` nor a field of the record's type
UNKNOWN = "__unknown"


def _p(name: str) -> str:
    return q("__p_" + name)


def typed_select(rtype: RecordType, cols: dict[str, Column], tz: str) -> str:
    """SQL select list of a typed row: every field's value and `__p_<field>` presence flags."""
    parts = []
    for f in rtype.fields:
        col = cols[f.name]
        parts.append(f"{typed_value(f, col, tz)} AS {q(f.name)}")
        parts.append(f"{col.present} AS {_p(f.name)}")
    return ", ".join(parts)


def final_select(rtype: RecordType) -> str:
    """SQL select list over a typed row giving the stored columns: defaults applied, ids derived."""
    parts = []
    for f in rtype.fields:
        if f.name == "id" and rtype.id_from:
            parts.append(f"__derived_id AS {q('id')}")
        elif f.default is not None:
            parts.append(f"coalesce({q(f.name)}, {lit(f.default)}) AS {q(f.name)}")
        else:
            parts.append(q(f.name))
    return ", ".join(parts)


def derived_id(rtype: RecordType) -> str:
    """SQL for the derived id of membership (`actor/team/from`) and invitation types."""
    pieces = []
    for name in rtype.id_from:
        if rtype.field(name).kind is Kind.TIMESTAMP:
            pieces.append(f"coalesce(strftime({q(name)}, '%Y-%m-%dT%H:%M:%SZ'), '')")
        else:
            pieces.append(f"coalesce({q(name)}, '')")
    return " || '/' || ".join(pieces) if pieces else "NULL"
