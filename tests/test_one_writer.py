"""In a server, every write goes through the one writer thread, in arrival order, and the
application's policy holds for any app built with create_app."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from heatlens.errors import ConfigError
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web import create_app
from tests.conftest import record


def test_writes_run_on_the_writer_thread_and_reads_do_not(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'w.duckdb'}")
    with TestClient(app):
        service = app.state.service
        assert app.state.application.access is service  # the application writes through it
        assert service.write(lambda store: threading.current_thread().name) == "heatlens-writer"
        assert service.read(lambda store: threading.current_thread().name) != "heatlens-writer"


def test_a_write_queued_behind_requests_sees_them_committed(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'w.duckdb'}")
    with TestClient(app):
        writer = app.state.service.writer
        records = [
            record("usage", id=f"u{i}", ts="2026-03-02T10:00:00Z", capability="ci", team="t")
            for i in range(3)
        ]
        with writer.paused():  # the request and the task wait in the queue, in this order
            request = writer.submit(records)
            task = writer.run(lambda store: store.counts()["usage"])
        assert request.result(timeout=60).result.read == 3
        assert task.result(timeout=60) == 3


def test_a_failing_write_task_reports_its_error_and_the_writer_goes_on(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'w.duckdb'}")
    with TestClient(app):
        application = app.state.application
        with pytest.raises(ConfigError, match="unknown type"):
            application.delete(type_name="nope", ids=["x"])
        created = application.create_token("read", "after the error")
        assert created["token"]["scope"] == "read"
        assert [t["name"] for t in application.list_tokens()["tokens"]] == ["after the error"]


def test_an_app_for_a_public_address_needs_a_token_to_start(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'p.duckdb'}"
    public = create_app(settings, url, host="0.0.0.0")
    with pytest.raises(ConfigError, match="refusing to serve an open API"), TestClient(public):
        pass
    with Store.open(url) as store:
        from heatlens.store.tokens import create_token

        create_token(store, "admin")
    with TestClient(create_app(settings, url, host="0.0.0.0")) as client:
        assert client.get("/healthz").status_code == 200
