"""Reading a Backstage catalog: YAML entities from a file, a directory tree, or a URL.

Each YAML document is one entity. `Location` entities are followed like Backstage follows them:
their relative targets are read from beside the file (or URL) that names them; targets that are
absolute URLs are not fetched from a local catalog, and missing targets are warnings, not errors —
Backstage's own example catalog names files it does not ship.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import yaml

from heatlens.connectors import ProgressFn, no_progress
from heatlens.errors import ConnectorError

ENTITY_API = "backstage.io/"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Entity:
    """One catalog entity and where it was read."""

    kind: str  # lower case: group, user, component, system, domain, location, …
    namespace: str
    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    where: str  # file:line

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


@dataclass
class Catalog:
    """The entities read, what was skipped, and what the user should know."""

    entities: list[Entity] = field(default_factory=list)
    files: int = 0
    other: int = 0  # documents that are not Backstage entities (e.g. Kubernetes manifests)
    warnings: list[str] = field(default_factory=list)


def read_catalog(
    location: str, *, pattern: str = "catalog-info.yaml", progress: ProgressFn = no_progress
) -> Catalog:
    """Every entity of the catalog at `location`: a file, a directory (files named `pattern`
    anywhere under it, hidden directories skipped), or an http(s) URL."""
    catalog = Catalog()
    if _is_url(location):
        queue: list[str] = [location]
    else:
        root = Path(location).expanduser()
        if root.is_dir():
            queue = [str(p) for p in _find(root, pattern)]
            if not queue:
                raise ConnectorError(f"{root}: no file named {pattern!r} under it (see --pattern)")
        elif root.is_file():
            queue = [str(root)]
        else:
            raise ConnectorError(f"{root}: no such file or directory (expected a catalog)")
    pending = [(where, "") for where in queue]
    seen: set[str] = set()
    while pending:
        where, named_by = pending.pop(0)
        key = where if _is_url(where) else str(Path(where).resolve())
        if key in seen:
            continue
        seen.add(key)
        try:
            text = _read(where)
        except ConnectorError as exc:
            if not named_by:
                raise
            catalog.warnings.append(f"{named_by}: Location target not read: {exc}")
            continue
        catalog.files += 1
        progress("reading catalog files", catalog.files, None)
        for entity in _entities(text, where, catalog):
            catalog.entities.append(entity)
            if entity.kind == "location":
                pending += [(target, entity.where) for target in _targets(entity, where, catalog)]
    return catalog


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def _find(root: Path, pattern: str) -> Iterator[Path]:
    for path in sorted(root.rglob(pattern)):
        if path.is_file() and not any(
            part.startswith(".") for part in path.relative_to(root).parts
        ):
            yield path


def _read(where: str) -> str:
    if not _is_url(where):
        try:
            return Path(where).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConnectorError(f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectorError(f"{where}: cannot read the catalog file ({exc})") from None
    import httpx

    try:
        response = httpx.get(where, timeout=30, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise ConnectorError(f"{where}: cannot fetch the catalog ({exc})") from None
    if response.status_code >= 400:
        raise ConnectorError(f"{where}: fetching the catalog gave HTTP {response.status_code}")
    return response.text


def _entities(text: str, where: str, catalog: Catalog) -> Iterator[Entity]:
    """The entities of one YAML stream, each with the line its document starts on."""
    loader = yaml.SafeLoader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    break
                node = loader.get_node()
                doc = loader.construct_document(node) if node is not None else None
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
                at = f":{mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ConnectorError(f"{where}{at}: unreadable YAML: {problem}") from None
            if doc is None:
                continue
            line = node.start_mark.line + 1 if node is not None else 1
            entity = _entity(doc, f"{where}:{line}")
            if entity is None:
                catalog.other += 1
            else:
                yield entity
    finally:
        loader.dispose()


def _entity(doc: Any, where: str) -> Entity | None:
    if not isinstance(doc, dict) or not str(doc.get("apiVersion", "")).startswith(ENTITY_API):
        return None
    kind, metadata, spec = doc.get("kind"), doc.get("metadata"), doc.get("spec") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(kind, str) or not isinstance(name, str) or not name:
        raise ConnectorError(f"{where}: a catalog entity needs `kind` and `metadata.name`")
    if not isinstance(spec, dict):
        raise ConnectorError(f"{where}: `spec` of {kind} {name} is not a mapping")
    assert isinstance(metadata, dict)
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    return Entity(kind.lower(), str(namespace), name, metadata, spec, where)


def _targets(entity: Entity, where: str, catalog: Catalog) -> list[str]:
    """Where a Location points, resolved against the file (or URL) that names it."""
    targets = entity.spec.get("targets") or []
    if entity.spec.get("target"):
        targets = [entity.spec["target"], *targets]
    found = []
    for target in targets:
        target = str(target)
        if _is_url(where):
            found.append(urljoin(where, target))
        elif urlparse(target).scheme:
            catalog.warnings.append(
                f"{entity.where}: Location {entity.name} target {target} is a URL: not followed "
                "from a local catalog"
            )
        else:
            found.append(str(Path(where).parent / target))
    return found
