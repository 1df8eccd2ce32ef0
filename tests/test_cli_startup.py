"""The command line starts with only what a command uses (issue 23).

Each check runs in a fresh interpreter (the test process has imported everything already)
and reads ``sys.modules`` after the command: ``closeguard --help`` and the import of
``closeguard.cli`` load no agent, MCP, drills, evals, LangGraph, LangChain or
OpenTelemetry; a command that reads the store loads neither Alembic nor LangGraph. The lazy
registry lists every command with the help its module gives it, and the migration head read
from the files is Alembic's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import typer

from closeguard.cli._app import COMMANDS, load

HEAVY = (
    "closeguard.agent",
    "closeguard.mcp",
    "closeguard.drills",
    "closeguard.evals",
    "closeguard.console",
    "langgraph",
    "langchain_core",
    "langchain",
    "mcp",
    "opentelemetry",
    "starlette",
    "uvicorn",
)
"""Top-level names no light command may import (a submodule counts as its package)."""

PROBE = """
import json, sys
from closeguard.cli import main
argv = json.loads(sys.argv[1])
if argv is not None:
    sys.argv = ["closeguard", *argv]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    sys.stdout.flush()
    print("\\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
else:
    print("\\n@@" + json.dumps({"code": 0, "modules": sorted(sys.modules)}))
"""


def loaded(
    argv: list[str] | None, tmp_path: Path, store: str | None = None
) -> tuple[int, set[str]]:
    """Exit code and the modules imported by ``closeguard *argv`` (None: only the import)."""
    env = dict(os.environ, COLUMNS="120")
    env["CLOSEGUARD_STORE_URL"] = store or f"sqlite:///{tmp_path / 'none.db'}"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert "@@" in out.stdout, out.stderr
    report = json.loads(out.stdout.rsplit("@@", 1)[1])
    return report["code"], set(report["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(
        m
        for m in modules
        if m in HEAVY or m.split(".")[0] in HEAVY or any(m.startswith(h + ".") for h in HEAVY)
    )


@pytest.mark.parametrize("argv", [None, ["--help"], ["policy", "--help"]], ids=str)
def test_the_cli_and_its_help_import_nothing_heavy(argv: list[str] | None, tmp_path: Path) -> None:
    code, modules = loaded(argv, tmp_path)
    assert code == 0
    assert heavy_in(modules) == []
    assert "closeguard.cli.chat" not in modules and "closeguard.cli.run" not in modules


@pytest.mark.parametrize(
    "argv", [["--help"], ["approvals", "--help"], ["policy", "list", "--help"]]
)
def test_help_is_printed_without_rich(argv: list[str], tmp_path: Path) -> None:
    """Typer's rich help imports rich's markdown, syntax and traceback modules (about half
    of ``closeguard --help``'s time); the help is click's plain text instead."""
    code, modules = loaded(argv, tmp_path)
    assert code == 0
    assert sorted(m for m in modules if m == "rich" or m.startswith(("rich.", "typer.rich"))) == []


def test_the_probe_sees_a_heavy_command(tmp_path: Path) -> None:
    """The check above can fail: ``chat --help`` does import the agent and LangGraph."""
    code, modules = loaded(["chat", "--help"], tmp_path)
    assert code == 0
    assert {"closeguard.agent", "langgraph"} <= {m for m in modules if m in HEAVY}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from closeguard.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'closeguard.db'}"
    Store(url).dispose()
    return url


@pytest.fixture(scope="module")
def filled_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with audit rows, so ``audit tail`` prints a table, and a run to show."""
    from closeguard.guardrails.audit import AuditLog
    from closeguard.store import Store
    from closeguard.store.runs import RunRows

    url = f"sqlite:///{tmp_path_factory.mktemp('filled') / 'closeguard.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        request = {"workflow": "w", "trigger_key": "k", "kind": "event", "payload": {}}
        RunRows(store).insert(conn, [{"id": "run_cli", **request}])
    log = AuditLog(store)
    for n in range(3):
        row = {"actor": "t", "endpoint": "lead.get", "method": "GET", "access": "read"}
        log.append({**row, "path": f"/lead/lead_{n}/", "decision": "allow", "args": {}})
    log.flush()
    store.dispose()
    return url


@pytest.mark.parametrize(
    "argv",
    [["runs", "list"], ["audit", "verify"], ["approvals", "list"], ["info"], ["policy", "list"]],
    ids=" ".join,
)
def test_a_store_command_skips_alembic_and_langgraph(
    argv: list[str], store_url: str, tmp_path: Path
) -> None:
    code, modules = loaded(argv, tmp_path, store_url)
    assert code == 0
    assert "alembic" not in modules
    assert heavy_in(modules) == []
    assert sorted(m for m in modules if m.startswith("sqlalchemy.dialects.postgresql")) == []


def test_postgresqls_insert_is_imported_when_a_postgresql_store_asks() -> None:
    """The check above can fail: the store's upserts load PostgreSQL's dialect on demand."""
    probe = (
        "import sys; from closeguard.store import Store; from closeguard.store.core import "
        "dialect_insert; before = 'sqlalchemy.dialects.postgresql' in sys.modules; "
        "from sqlalchemy import Column, MetaData, String, Table; "
        "t = Table('t', MetaData(), Column('k', String, primary_key=True)); "
        "dialect_insert('postgresql', t).on_conflict_do_nothing(); "
        "print(before, 'sqlalchemy.dialects.postgresql' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True"]


READERS = [
    ["runs", "list"],
    ["runs", "show", "run_cli"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["audit", "head"],
    ["audit", "show", "1"],
    ["audit", "export"],
    ["approvals", "list"],
    ["approvals", "list", "--all"],
    ["policy", "replay", "read-only", "--actor", "t"],
]


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_a_store_command_on_a_current_sqlite_store_loads_no_sqlalchemy(
    argv: list[str], filled_url: str, tmp_path: Path
) -> None:
    """A SQLite store at the newest revision is read on the standard library
    (``store/reader.py``): SQLAlchemy's import was over a third of each command; nor
    pydantic, the catalog or the store's table modules (options are converted without
    typer's pydantic layer, ``cli/_params.py``)."""
    code, modules = loaded(argv, tmp_path, filled_url)
    assert code == 0
    unwanted = ("sqlalchemy", "pydantic", "closeguard.tools.models", "closeguard.store.core")
    assert sorted(m for m in modules if m.startswith(unwanted)) == []


def _requests(url: str, *, ttl: float, n: int) -> list[str]:
    """``n`` pending requests (``ttl`` seconds to live) and an account ``boss`` (admin)."""
    from closeguard.guardrails.accounts import Accounts
    from closeguard.guardrails.approvals import Approvals
    from closeguard.store import Store
    from closeguard.tools.catalog import BY_NAME, Call

    store = Store(url)
    Accounts(store).add("boss", roles=["admin"])
    ids = []
    for i in range(n):
        call = Call(BY_NAME["lead.delete"], "destructive", {"id": f"lead_{i}"}, {}, {})
        request = Approvals(store, ttl=ttl).request(call, method="DELETE", path=f"/lead/lead_{i}/")
        ids.append(request.id)
    store.dispose()
    return ids


def test_recording_an_expiry_while_listing_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """A request past its expiry is recorded as ``expired`` (and audited: a write) by the
    standard-library writer (``store/writer.py``) before the list is read."""
    from closeguard.guardrails.approvals import Approvals
    from closeguard.guardrails.audit import AuditLog
    from closeguard.store import Store

    url = f"sqlite:///{tmp_path / 'due.db'}"
    [approval_id] = _requests(url, ttl=-1, n=1)
    code, modules = loaded(["approvals", "list", "--all"], tmp_path, url)
    assert code == 0
    assert sorted(m for m in modules if m.startswith("sqlalchemy")) == []
    store = Store(url, create=False)
    [approval] = Approvals(store).list()
    assert (approval.id, approval.status) == (approval_id, "expired")
    assert approval.decided_at is not None
    log = AuditLog(store)
    assert log.verify().ok
    [row] = log.tail(1)
    assert (row["decision"], row["approval_id"], row["actor"]) == (
        "expired",
        approval_id,
        "closeguard",
    )
    store.dispose()


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_deciding_on_a_current_sqlite_store_loads_no_sqlalchemy(
    action: str, tmp_path: Path
) -> None:
    """``approvals approve``/``reject`` decide on the standard-library writer: the approval
    is decided by the account and its decision chained in the audit log, as on the
    ``Store``; a second decision is refused."""
    from closeguard.guardrails.approvals import Approvals
    from closeguard.guardrails.audit import AuditLog
    from closeguard.store import Store

    url = f"sqlite:///{tmp_path / 'decide.db'}"
    [approval_id] = _requests(url, ttl=3600, n=1)
    argv = ["approvals", action, approval_id, "--as", "boss", "--note", "checked"]
    code, modules = loaded(argv, tmp_path, url)
    assert code == 0
    unwanted = ("sqlalchemy", "pydantic", "closeguard.store.core")
    assert sorted(m for m in modules if m.startswith(unwanted)) == []
    store = Store(url, create=False)
    approval = Approvals(store).get(approval_id)
    assert approval is not None
    assert approval.status == ("approved" if action == "approve" else "rejected")
    assert (approval.decided_by, approval.note) == ("boss", "checked")
    log = AuditLog(store)
    assert log.verify().ok
    [row] = log.tail(1)
    assert (row["method"], row["decision"], row["actor"]) == ("DECIDE", approval.status, "boss")
    assert json.loads(row["args"])["via"] == "cli"
    store.dispose()
    code, _ = loaded(argv, tmp_path, url)
    assert code == 1


def test_retrying_a_run_on_a_current_sqlite_store_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """``runs retry`` puts a dead run back in its queue on the standard-library writer; a
    run that is not dead or failed is refused, and left as it was."""
    from closeguard.store import Store
    from closeguard.store.runs import RunRows

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        RunRows(store).insert(
            conn,
            [
                {"id": i, "workflow": "w", "trigger_key": i, "kind": "event", "payload": {}}
                for i in ("run_dead", "run_done")
            ],
        )
        runs = store.tables.runs
        conn.execute(runs.update().where(runs.c.id == "run_dead").values(status="dead", attempts=5))
        conn.execute(runs.update().where(runs.c.id == "run_done").values(status="completed"))
    store.dispose()
    code, modules = loaded(["runs", "retry", "run_de"], tmp_path, url)
    assert code == 0
    assert sorted(m for m in modules if m.startswith(("sqlalchemy", "pydantic"))) == []
    code, _ = loaded(["runs", "retry", "run_done"], tmp_path, url)
    assert code == 1
    store = Store(url, create=False)
    rows = RunRows(store)
    dead, done = rows.get("run_dead"), rows.get("run_done")
    assert dead is not None and (dead.status, dead.attempts, dead.worker) == ("queued", 0, None)
    assert done is not None and done.status == "completed"
    store.dispose()


def test_accounts_are_kept_on_the_writer_of_a_current_sqlite_store(tmp_path: Path) -> None:
    """``users add/list/disable/rotate`` on a current SQLite store load no SQLAlchemy; the
    token the writer's ``users add`` printed authenticates through the ``Store`` until it is
    rotated. On a store that does not exist yet, ``users add`` creates it (the ``Store``)."""
    from closeguard.guardrails.accounts import Accounts
    from closeguard.store import Store

    url = f"sqlite:///{tmp_path / 'users.db'}"
    code, modules = loaded(["users", "add", "ann", "--role", "admin"], tmp_path, url)
    assert code == 0 and "sqlalchemy" in modules
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["users", "add", "bob", "--role", "sales-rep"])],
        capture_output=True,
        text=True,
        env=dict(os.environ, CLOSEGUARD_STORE_URL=url),
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    token = out.stdout.split("token: ", 1)[1].split()[0]
    assert "sqlalchemy" not in json.loads(out.stdout.rsplit("@@", 1)[1])["modules"]
    store = Store(url, create=False)
    bob = Accounts(store).authenticate(token)
    assert bob is not None and bob.roles == ("sales-rep",)
    store.dispose()
    for argv in (["users", "list"], ["users", "rotate", "bob"], ["users", "disable", "ann"]):
        code, modules = loaded(argv, tmp_path, url)
        assert code == 0, argv
        assert sorted(m for m in modules if m.startswith("sqlalchemy")) == [], argv
    store = Store(url, create=False)
    accounts = Accounts(store)
    assert accounts.authenticate(token) is None
    assert [(a.name, a.disabled) for a in accounts.list()] == [("ann", True), ("bob", False)]
    store.dispose()


def test_a_store_the_writer_cannot_take_as_is_decides_on_the_store(tmp_path: Path) -> None:
    """The check above can fail: a store at an older revision is opened (and migrated) by
    the ``Store``, which decides as before."""
    import sqlite3

    from closeguard.guardrails.approvals import Approvals
    from closeguard.store import Store

    path = tmp_path / "old.db"
    [approval_id] = _requests(f"sqlite:///{path}", ttl=3600, n=1)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    code, modules = loaded(
        ["approvals", "approve", approval_id, "--as", "boss"], tmp_path, f"sqlite:///{path}"
    )
    assert code == 0
    assert "sqlalchemy" in modules
    store = Store(f"sqlite:///{path}", create=False)
    approval = Approvals(store).get(approval_id)
    assert approval is not None and approval.status == "approved"
    store.dispose()


def test_listing_the_shipped_policies_loads_neither_pydantic_nor_the_catalog(
    tmp_path: Path,
) -> None:
    """``policy list`` reads the YAML files' descriptions (``guardrails/_shipped.py``)."""
    code, modules = loaded(["policy", "list"], tmp_path)
    assert code == 0
    unwanted = ("pydantic", "closeguard.tools.catalog", "closeguard.guardrails.policy")
    assert sorted(m for m in modules if m.startswith(unwanted)) == []


@pytest.mark.parametrize(
    "argv",
    [["catalog"], ["policy", "check", "read-only"], ["policy", "explain", "read-only"]],
    ids=" ".join,
)
def test_the_catalog_and_a_policy_without_constraints_load_no_pydantic(
    argv: list[str], tmp_path: Path
) -> None:
    """The catalog names its models and imports them on first use; a policy imports
    pydantic only to check a constraint's values (``read-only`` has none)."""
    code, modules = loaded(argv, tmp_path)
    assert code == 0
    unwanted = ("pydantic", "closeguard.tools.models")
    assert sorted(m for m in modules if m.startswith(unwanted)) == []


def test_info_on_a_sqlite_store_loads_no_sqlalchemy(store_url: str, tmp_path: Path) -> None:
    """``info`` looks at a SQLite file with the standard library: SQLAlchemy's import was
    most of its time. It still says the store exists (``test_cli_info`` checks the rest)."""
    code, modules = loaded(["info"], tmp_path, store_url)
    assert code == 0
    assert sorted(m for m in modules if m.startswith(("sqlalchemy", "pydantic"))) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog"],
        ["policy", "list"],
        ["policy", "explain", "read-only"],
        ["audit", "tail"],
        ["runs", "list"],
        ["workflows", "list"],
    ],
    ids=" ".join,
)
def test_a_listing_prints_its_table_without_rich(
    argv: list[str], filled_url: str, tmp_path: Path
) -> None:
    """Listings print plain columns (``cli/_table.py``): Rich's table layout and import
    cost more than the query behind a listing."""
    code, modules = loaded(argv, tmp_path, filled_url)
    assert code == 0
    assert sorted(m for m in modules if m.split(".")[0] == "rich") == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["catalog"], ["policy", "list"], ["policy", "explain", "read-only"]],
    ids=" ".join,
)
def test_a_command_without_the_store_loads_no_sqlalchemy(argv: list[str], tmp_path: Path) -> None:
    code, modules = loaded(argv, tmp_path)
    assert code == 0
    assert sorted(m for m in modules if m.startswith("sqlalchemy")) == []


def test_listing_workflows_builds_no_graph(tmp_path: Path) -> None:
    """The packaged workflows and rules load without LangGraph, LangChain or the agent's
    graph (an LLM or agent step imports them when it runs), and without the store and
    SQLAlchemy (the runtime's context and the effect journal are not loaded), and without
    pydantic and the models (constraints are checked by name and plain type, from
    ``tools.fields``) or APScheduler and asyncio (the packaged rules' crontab lines are
    checked by ``test_wf_rules_loader``, not at every start)."""
    code, modules = loaded(["workflows", "list"], tmp_path)
    assert code == 0
    unwanted = (
        "langgraph",
        "langchain_core",
        "langsmith",
        "closeguard.agent.graph",
        "closeguard.store",
        "sqlalchemy",
        "pydantic",
        "closeguard.tools.models",
        "apscheduler",
        "asyncio",
    )
    assert sorted(m for m in modules if m.startswith(unwanted)) == []
    assert "closeguard.cli.run" not in modules and "closeguard.simulator" not in modules


def test_a_store_that_needs_migrating_still_is(tmp_path: Path) -> None:
    """Alembic is skipped only when the version row says the store is at the head."""
    from sqlalchemy import create_engine, text

    from closeguard.store import Store
    from closeguard.store.migrations import current, head

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    engine.dispose()
    code, modules = loaded(["runs", "list"], tmp_path, url)
    assert code == 0 and "alembic" in modules
    store = Store(url, create=False)
    with store.engine.connect() as conn:
        assert current(conn) == head()
    store.dispose()


def test_the_head_read_from_the_files_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from closeguard.store import migrations

    config = Config()
    config.set_main_option("script_location", str(migrations.LOCATION))
    assert migrations.head() == ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_registry_help_is_the_modules_help(name: str) -> None:
    """``closeguard --help`` shows the registry's line; it must be what the module says."""
    command = load(name)
    assert command.name == name
    first = (command.help or "").split("\n\n")[0].replace("\n", " ").strip()
    assert COMMANDS[name].help == first


def test_a_subcommand_added_to_a_group_module_needs_no_registry_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from closeguard.cli import app
    from closeguard.cli import policy as policy_cmd

    fresh = typer.Typer(help=policy_cmd.app.info.help)
    for info in policy_cmd.app.registered_commands:
        fresh.registered_commands.append(info)

    @fresh.command("hello")
    def hello() -> None:
        """Say hello."""
        typer.echo("hello from a new subcommand")

    monkeypatch.setattr(policy_cmd, "app", fresh)
    result = CliRunner().invoke(app, ["policy", "hello"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello from a new subcommand\n"


def settings_cases(
    monkeypatch: pytest.MonkeyPatch,
    folder: Path,
    names: Iterable[str],
    cases: list[tuple[dict[str, str], str | None]],
) -> Iterator[tuple[dict[str, str], str | None]]:
    """Each ``(environment, .env text)`` case set up in turn in ``folder`` (made the working
    directory), every variable of ``names`` (in any case) cleared first."""
    monkeypatch.chdir(folder)
    wanted = {n.lower() for n in names}
    for key in list(os.environ):
        if key.lower() in wanted:
            monkeypatch.delenv(key)
    for env, dotenv in cases:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            env_file = folder / ".env"
            if dotenv is None:
                env_file.unlink(missing_ok=True)
            else:
                env_file.write_text(dotenv)
            yield env, dotenv


def test_store_url_reads_what_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The light reader of the store's URL agrees with pydantic-settings: environment
    first (any case), then ``.env``, then the default."""
    from closeguard.tools.settings import Settings, store_url

    cases = [
        ({}, None),
        ({}, "CLOSEGUARD_STORE_URL=sqlite:///from-dotenv.db\n"),
        ({"CLOSEGUARD_STORE_URL": "sqlite:///from-env.db"}, "STORE_URL=sqlite:///dot.db\n"),
        ({"closeguard_store_url": "sqlite:///lower.db"}, None),
        ({"STORE_URL": "sqlite:///alias.db"}, None),
        ({}, "closeguard_store_url='postgresql://u@h/db'  # a comment\n"),
    ]
    names = ("closeguard_store_url", "store_url")
    for env, dotenv in settings_cases(monkeypatch, tmp_path, names, cases):
        assert store_url() == Settings().store_url, (env, dotenv)


def test_info_reads_what_settings_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``info`` reads the key, the OAuth token, the base URL and the model without
    pydantic-settings: each as ``Settings`` reads it (environment first, any case, then
    ``.env``; empty values kept)."""
    from closeguard.tools.settings import (
        API_KEY_NAMES,
        BASE_URL_NAMES,
        CLOSE_BASE_URL,
        MODEL_NAMES,
        OAUTH_ACCESS_TOKEN_NAMES,
        Settings,
        read,
    )

    names = (*API_KEY_NAMES, *BASE_URL_NAMES, *MODEL_NAMES, *OAUTH_ACCESS_TOKEN_NAMES)
    cases = [
        ({}, None),
        ({"CLOSE_API_KEY": "k-env", "closeguard_model": "openai:x"}, "CLOSE_API_KEY=k-dot\n"),
        ({"close_api_key": ""}, "CLOSE_BASE_URL=http://127.0.0.1:1/api/v1\nMODEL=ollama:y\n"),
        ({"CLOSE_OAUTH_ACCESS_TOKEN": "tok"}, "close_base_url=''\n"),
        ({"CLOSE_BASE_URL": "http://127.0.0.1:2/api/v1"}, "close_oauth_access_token=t2\n"),
    ]
    for env, _ in settings_cases(monkeypatch, tmp_path, names, cases):
        settings = Settings()
        secrets = [settings.close_api_key, settings.close_oauth_access_token]
        expected = [None if s is None else s.get_secret_value() for s in secrets]
        assert [read(API_KEY_NAMES), read(OAUTH_ACCESS_TOKEN_NAMES)] == expected, env
        base_url = read(BASE_URL_NAMES)
        assert (CLOSE_BASE_URL if base_url is None else base_url) == settings.close_base_url
        assert read(MODEL_NAMES) == settings.model, env


@pytest.mark.parametrize(
    "package",
    [
        "closeguard.tools",
        "closeguard.guardrails",
        "closeguard.workflows",
        "closeguard.agent",
        "closeguard.store",
    ],
)
def test_every_lazy_export_is_the_object_its_module_defines(package: str) -> None:
    """A lazy export resolves to its module's object, even once every submodule is imported
    (the import system sets a package attribute to a submodule of the same name)."""
    import importlib
    import pkgutil

    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
    for name in module.__all__:
        value = getattr(module, name)
        assert not isinstance(value, type(module)), f"{package}.{name} is a module"
        home = getattr(value, "__module__", None)
        if home is not None and home.startswith(package):
            assert getattr(importlib.import_module(home), name, value) is value


@pytest.mark.parametrize("argv", [[], ["policy"]], ids=str)
def test_a_bare_group_prints_its_help_once(argv: list[str], tmp_path: Path) -> None:
    """``closeguard`` and ``closeguard policy`` without a command show the help, once."""
    out = subprocess.run(
        [str(Path(sys.executable).with_name("closeguard")), *argv],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="120"),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Usage: closeguard") == 1, out.stdout
    assert "Commands" in out.stdout
