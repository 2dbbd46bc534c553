"""Backstage catalog entities → canonical records (pure: no I/O).

- `Group` → team (`spec.parent`, or a group listing it in `spec.children`, → `parent`);
- `User.spec.memberOf` and `Group.spec.members` → memberships (one per user and group);
- `Component` → service, owned by its `spec.owner` group — or, when a user owns it, by that user's
  group if they have exactly one;
- `System` and `Domain` are kept in the `attributes` of the services they contain (with each
  Component's `lifecycle` and `type`, and the entity reference), since the data model has no
  record for them; a team's `attributes` hold its group `type`.

Ids are Backstage entity names; an entity outside the `default` namespace is `namespace/name`,
so a user `guest` and a user `development/guest` stay two people. References follow Backstage's
rules (`[kind:][namespace/]name`, the namespace defaulting to the referring entity's). An
unqualified owner is a Group, as in Backstage — or the User of that name when there is no such
group. A reference to an entity the catalog does not define is kept as written (the team may come
from another source) and reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from heatlens.connectors.backstage.catalog import DEFAULT_NAMESPACE, Entity


@dataclass
class Mapped:
    """Records of a catalog, and warnings."""

    teams: list[dict[str, Any]] = field(default_factory=list)
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (actor, team)
    people: set[str] = field(default_factory=set)  # every User of the catalog
    services: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def entity_id(namespace: str, name: str) -> str:
    """The heatlens id of an entity: its name, prefixed by its namespace unless `default`."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


def parse_ref(ref: str, *, kind: str, namespace: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of `[kind:][namespace/]name`, lower-cased like Backstage compares."""
    text = str(ref).strip()
    if ":" in text:
        kind, text = text.split(":", 1)
    if "/" in text:
        namespace, text = text.split("/", 1)
    return kind.lower(), namespace.lower(), text.lower()


class _Index:
    """Entities by (kind, namespace, name), compared case-insensitively."""

    def __init__(self, entities: Iterable[Entity]) -> None:
        self.by_key: dict[tuple[str, str, str], Entity] = {}
        for e in entities:
            self.by_key.setdefault((e.kind, e.namespace.lower(), e.name.lower()), e)
        self.unresolved: dict[str, list[str]] = {}

    def find(self, key: tuple[str, str, str]) -> Entity | None:
        return self.by_key.get(key)

    def resolve(self, key: tuple[str, str, str], referrer: str) -> str:
        """The id of the entity `key` names; kept as written (and reported) when it is unknown."""
        entity = self.find(key)
        if entity is not None:
            return entity_id(entity.namespace, entity.name)
        kind, namespace, name = key
        self.unresolved.setdefault(f"{kind}:{namespace}/{name}", []).append(referrer)
        return entity_id(namespace, name)


def map_catalog(entities: Iterable[Entity]) -> Mapped:
    """Teams, memberships and services of a catalog."""
    entities = list(entities)
    index = _Index(entities)
    out = Mapped()
    of_kind = {k: [e for e in entities if e.kind == k] for k in ("group", "user", "component")}

    parents: dict[str, str] = {}
    for g in of_kind["group"]:
        gid = entity_id(g.namespace, g.name)
        if g.spec.get("parent"):
            key = parse_ref(g.spec["parent"], kind="group", namespace=g.namespace)
            parents[gid] = index.resolve(key, f"group {gid} parent")
    for g in of_kind["group"]:
        gid = entity_id(g.namespace, g.name)
        for child in _list(g.spec.get("children")):
            key = parse_ref(child, kind="group", namespace=g.namespace)
            cid = index.resolve(key, f"group {gid} children")
            if index.find(key) is None:
                continue
            if parents.setdefault(cid, gid) != gid:
                out.warnings.append(
                    f"{g.where}: group {gid} lists {cid} as a child, but {cid}'s parent is "
                    f"{parents[cid]}: kept {parents[cid]}"
                )
    for g in of_kind["group"]:
        gid = entity_id(g.namespace, g.name)
        profile = g.spec.get("profile") or {}
        out.teams.append(
            {
                "type": "team",
                "id": gid,
                "name": profile.get("displayName") or g.metadata.get("title"),
                "parent": parents.get(gid),
                "attributes": _attrs(g, type=g.spec.get("type")),
            }
        )
        for member in _list(g.spec.get("members")):
            key = parse_ref(member, kind="user", namespace=g.namespace)
            out.memberships.add((index.resolve(key, f"group {gid} members"), gid))
    for u in of_kind["user"]:
        uid = entity_id(u.namespace, u.name)
        out.people.add(uid)
        for group in _list(u.spec.get("memberOf")):
            key = parse_ref(group, kind="group", namespace=u.namespace)
            out.memberships.add((uid, index.resolve(key, f"user {uid} memberOf")))

    groups_of: dict[str, list[str]] = {}
    for actor, team in sorted(out.memberships):
        groups_of.setdefault(actor, []).append(team)
    for c in of_kind["component"]:
        cid = entity_id(c.namespace, c.name)
        owner = _owner(c, cid, index, groups_of, out)
        system = domain = None
        if c.spec.get("system"):
            key = parse_ref(c.spec["system"], kind="system", namespace=c.namespace)
            system = index.resolve(key, f"component {cid} system")
            found = index.find(key)
            if found is not None and found.spec.get("domain"):
                dkey = parse_ref(found.spec["domain"], kind="domain", namespace=found.namespace)
                domain = index.resolve(dkey, f"system {system} domain")
        out.services.append(
            {
                "type": "service",
                "id": cid,
                "name": c.metadata.get("title"),
                "team": owner,
                "attributes": _attrs(
                    c,
                    type=c.spec.get("type"),
                    lifecycle=c.spec.get("lifecycle"),
                    system=system,
                    domain=domain,
                ),
            }
        )
    for ref, referrers in sorted(index.unresolved.items()):
        shown = ", ".join(sorted(set(referrers))[:3])
        out.warnings.append(f"{ref} is not in the catalog (named by {shown}): kept as written")
    return out


def _owner(
    c: Entity, cid: str, index: _Index, groups_of: dict[str, list[str]], out: Mapped
) -> str | None:
    """The team owning a component: its owner group, or the one group of its owner user."""
    owner = c.spec.get("owner")
    if not owner:
        out.warnings.append(f"{c.where}: component {cid} has no spec.owner: no team")
        return None
    key = parse_ref(owner, kind="group", namespace=c.namespace)
    explicit = ":" in str(owner)
    if not explicit and index.find(key) is None:
        as_user = ("user", key[1], key[2])
        if index.find(as_user) is not None:
            key = as_user
    if key[0] == "group":
        return index.resolve(key, f"component {cid} owner")
    if key[0] != "user":
        out.warnings.append(f"{c.where}: component {cid} is owned by a {key[0]}: no team")
        return None
    user = index.resolve(key, f"component {cid} owner")
    groups = groups_of.get(user, [])
    if len(groups) == 1:
        return groups[0]
    out.warnings.append(
        f"{c.where}: component {cid} is owned by user {user}, who is in "
        f"{len(groups)} groups: no team"
    )
    return None


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _attrs(entity: Entity, **values: Any) -> dict[str, Any]:
    """A record's `attributes` (values that are None are left out)."""
    kept = {"entity": entity.ref, **values}
    return {k: v for k, v in kept.items() if v is not None}
