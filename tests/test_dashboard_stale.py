"""A real server after a write: the next page is the previous version's, served at once and
marked; the new version's page follows once the server has rebuilt it in the background."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from tests.serve_process import ServeProcess
from tests.test_dashboard import RANGE, _usage, organisation, text_of


def test_a_write_serves_the_previous_version_marked_then_the_new_one(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'stale.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
    server = ServeProcess(url, cwd=tmp_path)
    base = server.start()
    path = f"/capabilities/ci?grain=month&{RANGE}"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            first = c.get(path)
            before = int(first.headers["heatlens-data-version"])
            assert "heatlens-stale" not in first.headers
            # by hand (organisation()): March, alpha and beta of 3 teams used ci
            assert re.search(r"2026-03-01\s+2\s+66\.7%", text_of(first.text))
            more = [_usage(100, "2026-03-25T10:00:00Z", "tiny", "success")]
            posted = c.post("/api/v1/events", json=more)
            assert posted.status_code == 201
            version = posted.json()["data_version"]
            assert version == before + 1

            stale = c.get(path)
            assert stale.status_code == 200
            assert stale.headers["heatlens-data-version"] == str(before)
            assert stale.headers["heatlens-stale"] == str(version)
            assert f"Updating — showing data as of version {before}" in stale.text
            assert text_of(stale.text) != text_of(first.text)  # only the note differs
            assert (
                text_of(stale.text)
                .replace(
                    f"Updating — showing data as of version {before} (the store is at version "
                    f"{version}); reload in a moment.",
                    "",
                )
                .split()
                == text_of(first.text).split()
            )

            for _ in range(1_000_000):  # poll: the server builds the new page meanwhile
                fresh = c.get(path)
                if "heatlens-stale" not in fresh.headers:
                    break
            assert fresh.headers["heatlens-data-version"] == str(version)
            # tiny now used ci in March too: 3 of 3 teams
            assert re.search(r"2026-03-01\s+3\s+100\.0%", text_of(fresh.text))
            assert "Updating" not in fresh.text
    finally:
        server.stop()
