"""People's identities replaced at ingest by a keyed HMAC when a key is set (DESIGN §3)."""

from __future__ import annotations

import hmac
from hashlib import sha256

import duckdb
import pyarrow as pa

from heatlens.settings import Settings
from heatlens.store.schema import q

__all__ = ["PERSON_FIELDS", "pseudonym", "pseudonymise"]

# fields holding a person's identity, pseudonymised at ingest when a key is set
PERSON_FIELDS = {"usage": "actor", "membership": "actor", "change": "author"}
# what `pseudonym` gives: never pseudonymised again
PSEUDONYM_PATTERN = "p-[0-9a-f]{20}"


def pseudonym(key: str, person: str) -> str:
    """The keyed HMAC of a person id that is stored instead of it."""
    return "p-" + hmac.new(key.encode(), person.encode(), sha256).hexdigest()[:20]


def pseudonymise(
    con: duckdb.DuckDBPyConnection, stage: str, type_name: str, settings: Settings
) -> None:
    """Replace the people of a stage by their pseudonyms (nothing without a key)."""
    person = PERSON_FIELDS.get(type_name)
    key = settings.pseudonymise_key
    if person is None or key is None:
        return
    values = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT {q(person)} FROM {stage} WHERE {q(person)} IS NOT NULL "
            # a value that already is a pseudonym stays as it is: a webhook's partial record
            # overlaid on its stored record (heatlens.ingest.partial) carries the stored one
            f"AND NOT regexp_full_match({q(person)}, '{PSEUDONYM_PATTERN}')"
        ).fetchall()
    ]
    mapping = pa.table({"v": values, "h": [pseudonym(key.get_secret_value(), v) for v in values]})
    con.register(f"{stage}_people", mapping)
    con.execute(
        f"UPDATE {stage} SET {q(person)} = m.h FROM {stage}_people m "
        f"WHERE {stage}.{q(person)} = m.v"
    )
    if type_name == "membership":
        # the id embeds the actor: derive it again from the pseudonym
        con.execute(
            f"UPDATE {stage} SET id = actor || '/' || team || '/' || "
            f"coalesce(strftime({q('from')}, '%Y-%m-%dT%H:%M:%SZ'), '')"
        )
    con.unregister(f"{stage}_people")
