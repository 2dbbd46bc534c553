"""One model per data version and settings (DESIGN §2 v2, issue 18).

What every metric reads — the registries, resolved usage with team and group, production
deployments and incidents with their links, the facts the common rules need (segment values
seen, where history starts), the survey waves' suppression decisions — is built once per (store,
settings) and kept while the data it was built from holds, then shared by every report, page and
`check` of the process, on any of its connections.

Each part of the model names the record types it reads and is rebuilt only when one of their
versions moved (`Store.type_versions`): a write of usage leaves the deployment links alone.
Parts are Python values (small: registries, facts) or tables the store keeps in its engine
(`materialise`: on DuckDB an in-memory database shared by the process's connections). A store
that cannot keep them (Postgres here) gets the expression back each time: the metrics then
build it per report, as before, and only the Python parts are shared.

The metrics stay pure Ibis: this module only decides when to (re)build and names the tables; the
store behind the `ModelStore` protocol decides how a table is kept.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from heatlens.settings import Settings

# record types, for the parts' dependencies
REGISTRIES = ("team", "service", "capability", "survey")
USAGE = ("usage", "service", "membership", "team")
DELIVERY = ("deployment", "service", "team")
INCIDENTS = ("incident", "service", "team")
LINKS = ("incident", "deployment", "service", "team")
LEAD_TIME = ("deployment", "change", "service", "team")


@runtime_checkable
class ModelStore(Protocol):
    """A store that can version and keep the model (heatlens.store.Store is one)."""

    dialect: str

    def table(self, name: str) -> Any: ...

    def type_versions(self) -> dict[str, int]: ...

    def model_scope(self) -> Hashable: ...

    def materialise(self, name: str, expr: Any) -> Any: ...

    def model_table(self, name: str) -> Any: ...

    def drop_model_table(self, name: str) -> None: ...


@dataclass
class Model:
    """The parts built for one store and settings, each with the versions it was built at."""

    scope: Hashable
    _parts: dict[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _previous: dict[str, str] = field(default_factory=dict)  # part → its previous table
    builds: Counter[str] = field(default_factory=Counter)  # how often each part was built


_MODELS: dict[tuple[Hashable, str], Model] = {}
_MODELS_LOCK = threading.Lock()
MAX_MODELS = 8


def _settings_key(settings: Settings) -> str:
    return settings.model_dump_json()


@dataclass
class ModelView:
    """The model as one report sees it: the versions read when the report started."""

    model: Model
    store: ModelStore
    versions: dict[str, int]
    materialises: bool

    @property
    def data_version(self) -> int:
        return self.versions[""]

    def _stamp(self, types: Iterable[str]) -> tuple[int, ...]:
        return tuple(self.versions.get(t, 0) for t in types)

    def value(self, name: str, types: Iterable[str], build: Callable[[], Any]) -> Any:
        """A Python value built from the record types `types`, shared while they hold."""
        stamp = self._stamp(types)
        m = self.model
        with m._lock:
            hit = m._parts.get(name)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            value = build()
            m.builds[name] += 1
            m._parts[name] = (stamp, value)
            return value

    def table(self, name: str, types: Iterable[str], build: Callable[[], Any]) -> Any | None:
        """A table built from `types`, kept in the store's engine and shared while they hold;
        None when the store cannot keep tables (the caller builds it per report).

        The generation before the current one is kept too (a report that started on it may
        still read it); older ones are dropped."""
        if not self.materialises:
            return None
        stamp = self._stamp(types)
        m = self.model
        with m._lock:
            hit = m._parts.get(name)
            if hit is None or hit[0] != stamp:
                table_name = f"{name}_{'_'.join(map(str, stamp))}"
                self.store.materialise(table_name, build())
                m.builds[name] += 1
                if hit is not None and hit[1] != table_name:
                    old = m._previous.pop(name, None)
                    if old is not None and old != table_name:
                        self.store.drop_model_table(old)
                    m._previous[name] = hit[1]
                m._parts[name] = (stamp, table_name)
            table_name = m._parts[name][1]
        return self.store.model_table(table_name)


def view(tables: Any, settings: Settings) -> ModelView | None:
    """The model of `tables`'s store for `settings`, as of now (None for tables that are not a
    versioned store: then every report builds what it reads itself)."""
    if not isinstance(tables, ModelStore):
        return None
    versions = tables.type_versions()
    scope = tables.model_scope()
    key = (scope, _settings_key(settings))
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = Model(scope)
            while len(_MODELS) > MAX_MODELS:
                _MODELS.pop(next(iter(_MODELS)))
    return ModelView(model, tables, versions, tables.dialect == "duckdb")
