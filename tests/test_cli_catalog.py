"""``closeguard --help``, ``--version`` and ``catalog``."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from closeguard import __version__
from closeguard.cli import app
from closeguard.tools.catalog import ENDPOINTS

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "catalog" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_catalog_json_lists_every_endpoint_with_access() -> None:
    result = runner.invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == [ep.name for ep in ENDPOINTS]
    for row, ep in zip(rows, ENDPOINTS, strict=True):
        assert set(row) >= {"name", "method", "path", "resource", "access", "event"}
        assert row["access"] == ep.access and row["path"] == ep.path
        assert row["event"] == ep.event


def test_catalog_table_and_resource_filter() -> None:
    result = runner.invoke(app, ["catalog", "--resource", "activity"])
    assert result.exit_code == 0
    assert "activity.email.create" in result.output and "lead.merge" not in result.output
    result = runner.invoke(app, ["catalog", "--resource", "nope"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no endpoints on resource 'nope'; resources: lead")
    assert result.stdout == ""


def test_catalog_resource_is_case_insensitive() -> None:
    lower = runner.invoke(app, ["catalog", "-r", "activity", "--json"])
    upper = runner.invoke(app, ["catalog", "-r", "Activity", "--json"])
    assert upper.exit_code == 0 and json.loads(upper.stdout) == json.loads(lower.stdout)


def test_catalog_table_and_json_show_the_same_path_form() -> None:
    rows = json.loads(runner.invoke(app, ["catalog", "-r", "lead", "--json"]).stdout)
    table = runner.invoke(app, ["catalog", "-r", "lead"]).stdout
    for row in rows:
        assert f" {row['path']} " in table
    assert "/api/v1/lead/" not in table
    assert not any(r["path"].startswith("/api/v1") for r in rows)
