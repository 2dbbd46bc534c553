"""`heatlens sync backstage`: Backstage's own example catalog, and catalogs written here."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest

from heatlens.connectors.backstage import sync_backstage
from heatlens.errors import ConnectorError
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import Cli, stored

EXAMPLES = Path(__file__).parent / "fixtures" / "backstage" / "packages" / "catalog-model"
EXAMPLES = EXAMPLES / "examples"


def rows(store: Store, type_name: str, *columns: str) -> set[tuple[object, ...]]:
    return set(stored(store, type_name, *columns))


def test_example_catalog(tmp_path: Path, settings: Settings) -> None:
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_backstage(store, settings, str(EXAMPLES), pattern="*.yaml")
        # nested groups: team-a → backstage → infrastructure → acme-corp; boxoffice beside backstage
        assert rows(store, "team", "id", "parent", "name") == {
            ("acme-corp", None, "ACME Corp"),
            ("infrastructure", "acme-corp", None),
            ("backstage", "infrastructure", "Backstage"),
            ("boxoffice", "infrastructure", "Box Office"),
            ("team-a", "backstage", None),
        }
        # the two guests are two people: one in `default`, one in `development`
        assert rows(store, "membership", "actor", "team") == {
            ("breanna.davison", "team-a"),
            ("janelle.dawe", "team-a"),
            ("nigel.manning", "team-a"),
            ("guest", "team-a"),
            ("development/guest", "team-a"),
        }
        # owned by a group, and (playback-order) by the user guest, whose one group is team-a
        assert rows(store, "service", "id", "team") == {
            ("artist-lookup", "team-a"),
            ("wayback-search", "team-a"),
            ("playback-order", "team-a"),
        }
        # System, Domain, lifecycle and type live in the records' attributes
        services = dict(stored(store, "service", "id", "attributes"))
        assert json.loads(services["artist-lookup"]) == {
            "entity": "component:default/artist-lookup",
            "type": "service",
            "lifecycle": "experimental",
            "system": "artist-engagement-portal",
            "domain": "artists",
        }
        assert json.loads(services["playback-order"])["lifecycle"] == "production"
        teams = dict(stored(store, "team", "id", "attributes"))
        assert json.loads(teams["infrastructure"])["type"] == "department"
    # children the example names but does not ship, and its Location's missing files
    dangling = [w for w in result.warnings if "is not in the catalog" in w]
    assert [w.split()[0] for w in dangling] == [
        "group:default/team-b",
        "group:default/team-c",
        "group:default/team-d",
    ]
    missing = [w for w in result.warnings if "Location target not read" in w]
    assert len(missing) == 4 and all("no such file" in w for w in missing)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip())
    return path


def entity(kind: str, name: str, spec: str = "{}", namespace: str = "default") -> str:
    return dedent(f"""\
        apiVersion: backstage.io/v1alpha1
        kind: {kind}
        metadata:
          name: {name}
          namespace: {namespace}
        spec: {spec}
        """)


def test_directory_reads_every_catalog_info_with_broken_references(
    tmp_path: Path, settings: Settings
) -> None:
    root = tmp_path / "repos"
    write(
        root / "org" / "catalog-info.yaml",
        "---\n".join(
            [
                # engineering and ghosts are defined nowhere
                entity("Group", "platform", "{parent: engineering}"),
                entity("Group", "payments", "{parent: platform, members: [ana, 'user:ops/bo']}"),
                entity("User", "cy", "{memberOf: [payments, ghosts]}"),
                entity("User", "ana", "{memberOf: [platform]}"),
                entity("User", "bo", "{}", namespace="ops"),
            ]
        ),
    )
    write(
        root / "checkout" / "catalog-info.yaml",
        "---\n".join(
            [
                entity("Component", "checkout", "{owner: payments, lifecycle: production}"),
                entity(
                    "Component", "ledger", "{owner: 'user:default/ana'}"
                ),  # ana is in two groups
                entity("Component", "fraud", "{owner: risk}"),  # no group or user called risk
            ]
        ),
    )
    write(root / "checkout" / "other.yaml", entity("Group", "not-read"))
    write(root / ".git" / "catalog-info.yaml", entity("Group", "hidden"))
    write(
        root / "k8s" / "catalog-info.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
    )
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_backstage(store, settings, str(root))
        assert rows(store, "team", "id", "parent") == {
            ("platform", "engineering"),
            ("payments", "platform"),
        }
        assert rows(store, "membership", "actor", "team") == {
            ("ana", "payments"),
            ("ana", "platform"),
            ("ops/bo", "payments"),
            ("cy", "payments"),
            ("cy", "ghosts"),
        }
        assert rows(store, "service", "id", "team") == {
            ("checkout", "payments"),
            ("ledger", None),
            ("fraud", "risk"),
        }
    text = "\n".join(result.warnings)
    for ref in ("group:default/engineering", "group:default/ghosts", "group:default/risk"):
        assert f"{ref} is not in the catalog" in text
    assert "component ledger is owned by user ana, who is in 2 groups: no team" in text


def test_memberships_start_and_end_with_the_syncs(tmp_path: Path, settings: Settings) -> None:
    catalog = tmp_path / "catalog-info.yaml"
    team = entity("Group", "payments")
    write(
        catalog,
        "---\n".join(
            [
                team,
                entity("User", "ana", "{memberOf: [payments]}"),
                entity("User", "bo", "{memberOf: [payments]}"),
            ]
        ),
    )
    first, second = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_backstage(store, settings, str(catalog), now=first)
        write(
            catalog,
            "---\n".join(
                [
                    team,
                    entity("User", "ana", "{memberOf: [payments]}"),
                    entity("User", "cy", "{memberOf: [payments]}"),
                ]
            ),
        )
        result = sync_backstage(store, settings, str(catalog), now=second)
        assert rows(store, "membership", "actor", "from", "to") == {
            ("ana", None, None),  # there from the start, still there
            ("bo", None, second),  # left: ends at the sync that no longer saw them
            ("cy", second, None),  # joined: starts at the sync that first saw them
        }
        assert (result.counts["membership"].inserted, result.counts["membership"].updated) == (
            1,
            1,
        )
        assert result.counts["team"].unchanged == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: [a\n",
            5,
            "unreadable YAML",
        ),
        (
            entity("Group", "a") + "---\napiVersion: backstage.io/v1alpha1\nkind: User\nspec: {}\n",
            8,
            "a catalog entity needs `kind` and `metadata.name`",
        ),
    ],
    ids=["bad-yaml", "no-name"],
)
def test_unreadable_catalog_is_one_line_with_its_line(
    tmp_path: Path, run: Cli, text: str, line: int, message: str
) -> None:
    bad = tmp_path / "catalog-info.yaml"
    bad.write_text(text)
    res = run("--store", str(tmp_path / "s.duckdb"), "sync", "backstage", "--catalog", str(bad))
    assert res.exit_code == 2
    [only] = res.output.strip().splitlines()
    assert f"{bad}:{line}: {message}" in only


@pytest.fixture
def served_examples() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_catalog_url_follows_its_location(tmp_path: Path, run: Cli, served_examples: str) -> None:
    url = f"{served_examples}/acme/org.yaml"
    res = run("--store", str(tmp_path / "s.duckdb"), "sync", "backstage", "--catalog", url)
    assert res.exit_code == 0, res.output
    assert "5 team(s), 5 membership(s), 0 service(s)" in res.output
    assert res.output.count("HTTP 404") == 4  # team-b … team-e are not in the example
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        assert {r["source"] for r in store.rows("team")} == {f"sync:backstage:{url}"}
    missing = run(
        "--store",
        str(tmp_path / "s.duckdb"),
        "sync",
        "backstage",
        "--catalog",
        f"{served_examples}/nope.yaml",
    )
    assert missing.exit_code == 2 and "gave HTTP 404" in missing.output


def test_missing_catalog_is_an_error(tmp_path: Path, settings: Settings) -> None:
    with (
        Store.open(str(tmp_path / "s.duckdb")) as store,
        pytest.raises(ConnectorError, match=r"no file named 'catalog-info\.yaml'"),
    ):
        sync_backstage(store, settings, str(tmp_path))


def test_pseudonymised_memberships_keep_names_out_of_the_state(tmp_path: Path) -> None:
    from heatlens.ingest import pseudonym
    from heatlens.settings import load_settings

    settings = load_settings(config=None, environ={}, overrides={"pseudonymise_key": "k3y"})
    catalog = tmp_path / "catalog-info.yaml"
    groups = [entity("Group", "payments"), entity("Group", "risk")]
    write(
        catalog,
        "---\n".join(
            [
                *groups,
                entity("User", "bo", "{memberOf: [payments]}"),
                entity("User", "cy", "{memberOf: [payments]}"),
            ]
        ),
    )
    later = datetime(2026, 4, 1, tzinfo=UTC)
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_backstage(store, settings, str(catalog))
        # bo moves to risk; cy leaves the catalog altogether
        write(catalog, "---\n".join([*groups, entity("User", "bo", "{memberOf: [risk]}")]))
        result = sync_backstage(store, settings, str(catalog), now=later)
        bo, cy = pseudonym("k3y", "bo"), pseudonym("k3y", "cy")
        assert rows(store, "membership", "actor", "team", "from", "to") == {
            (bo, "payments", None, later),
            (bo, "risk", later, None),
            (cy, "payments", None, None),  # only its pseudonym is known: it cannot be closed
        }
        [(_, state, _)] = store.sync_states()
        state_text = json.dumps(state)
        assert '"bo' not in state_text and '"cy' not in state_text and bo in state_text
    assert any("1 membership(s) of people no longer in the catalog" in w for w in result.warnings)
