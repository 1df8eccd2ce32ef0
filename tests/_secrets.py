"""The suite-wide secrets drill (issue 14, item 5): every test runs under a known fake Close
API key and webhook signature key, and neither may show up anywhere a person could read it.

Registered from ``tests/conftest.py`` (``pytest_plugins``), so it is on in every
``pytest``/``make test`` run. To run the suite under other keys, set
``CLOSEGUARD_TEST_API_KEY`` (any text of 16+ characters) and
``CLOSEGUARD_TEST_SIGNATURE_KEY`` (64 hex characters).

**Known keys.** Every credential the suite uses is recognisable:

- every Close API key *contains* ``KNOWN_API_KEY``: the simulator's default key is that key
  (``Simulator.__init__`` renames its world's first key), ``add_api_key()`` issues
  ``KNOWN_API_KEY + "_k<n>"``, and the tests' own constants come from ``api_key(tag)``;
- every webhook signature key *starts with* ``SIGNATURE_PREFIX`` (the known signature key's
  first 32 hex characters): the simulator's ``IdFactory.hex_secret``, the dry-run guard's
  fake ``signature_key`` and the tests' constants (``signature_key(n)``; ``n=0`` is the
  known key itself). A 128-bit suffix keeps different keys different.

So one substring test per surface finds any of them (the API key also in the base64 of a
``Basic`` header).

**Surfaces scanned** (a leak is reported with the test's nodeid and an excerpt with the key
masked):

- every log record that is created (a record factory, so a logger that does not
  propagate is read too; the ``closeguard`` loggers are set to DEBUG for the session so
  their debug and info records are created): message, exception and stack text;
- each test's captured stdout, stderr and log sections and its failure text;
- every ``click``/``typer`` ``CliRunner.invoke`` result: output, stderr, exception;
- every ``CloseguardError`` built: ``str`` and ``repr`` once its outermost ``__init__``
  returns;
- every HTTP response an ``httpx`` (or ``httpx2``) client receives from a real app (ASGI
  apps, sockets, Starlette's ``TestClient``, the MCP client; a test's own ``MockTransport``
  is the test speaking for Close and is not scanned): headers and body, streamed bodies
  chunk by chunk;
- at the session's end every file under pytest's basetemp: SQLite stores table by table,
  other files byte for byte; child processes started with the session's environment write
  their log records and uncaught tracebacks to ``secrets-child-<pid>.log`` there (via
  ``tests/_secrets_site/sitecustomize.py``).

**Allowed, on purpose:** the simulator's answer to creating a webhook (``POST .../webhook/``)
carries ``signature_key`` (Close returns it once, on create); ``closeguard sim serve``
prints ``API key: ...`` so a user can point a client at it; the store's
``webhook_subscriptions.signature_key`` column (the receiver needs it); the simulator's
world files (``closeguard-sim-world``: Close's own database).

A leak fails the test in the phase it happened (setup, call or teardown); a leak outside
any test, or in a file found at the end, fails the session. The terminal summary prints
one line with the counts scanned.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click.testing
import httpx
import pytest
import typer.testing

from closeguard.guardrails import dryrun
from closeguard.simulator import Simulator
from closeguard.simulator.state import IdFactory
from closeguard.simulator.world import WORLD_FORMAT
from closeguard.tools.errors import CloseguardError

DEFAULT_API_KEY = "api_FAKE0closeguard0secrets0drill0KEY"
DEFAULT_SIGNATURE_KEY = "5ec7e75d" + "0c105e90" + "a7d5ec7e" + "75d7e575" + "0" * 32


def _known(name: str, default: str, check: Callable[[str], bool], what: str) -> str:
    value = os.environ.get(name) or default
    if not check(value):
        raise pytest.UsageError(f"{name} must be {what}")
    return value


def _is_hex64(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}", value) is not None


KNOWN_API_KEY = _known(
    "CLOSEGUARD_TEST_API_KEY", DEFAULT_API_KEY, lambda v: len(v) >= 16, "16+ characters"
)
KNOWN_SIGNATURE_KEY = _known(
    "CLOSEGUARD_TEST_SIGNATURE_KEY", DEFAULT_SIGNATURE_KEY, _is_hex64, "64 lowercase hex digits"
)
SIGNATURE_PREFIX = KNOWN_SIGNATURE_KEY[:32]
_BASIC = base64.b64encode(KNOWN_API_KEY[: len(KNOWN_API_KEY) // 3 * 3].encode()).decode()
NEEDLES: tuple[tuple[str, str], ...] = (
    ("API key", KNOWN_API_KEY),
    ("API key (base64)", _BASIC),
    ("signature key", SIGNATURE_PREFIX),
)
_BYTE_NEEDLES = tuple((name, n.encode()) for name, n in NEEDLES)
_MASK = re.compile("|".join(re.escape(n) for _, n in NEEDLES))
CHILD_LOG_ENV = "CLOSEGUARD_SECRETS_CHILD_DIR"
SITE_DIR = Path(__file__).with_name("_secrets_site")
WEBHOOK_CREATE = re.compile(r"/webhook/?$")
ALLOWED_COLUMNS = {("webhook_subscriptions", "signature_key")}


def api_key(tag: str = "") -> str:
    """A Close API key the scan recognises: the known key, plus ``tag`` to keep keys apart."""
    return KNOWN_API_KEY + tag


def signature_key(n: int = 0) -> str:
    """A webhook signature key the scan recognises: ``n=0`` is the known key itself."""
    return KNOWN_SIGNATURE_KEY if n == 0 else SIGNATURE_PREFIX + f"{n:032x}"


def found(text: str) -> str | None:
    """The name of the first known key in ``text``, or None."""
    for name, needle in NEEDLES:
        if needle in text:
            return name
    return None


def mask(text: str) -> str:
    """``text`` with every known key replaced by ``<KEY>``."""
    return _MASK.sub("<KEY>", text)


def _excerpt(text: str, needle: str) -> str:
    at = text.find(needle)
    return mask(text[max(0, at - 80) : at + len(needle) + 80]).replace("\n", "\\n")


@dataclass
class Leak:
    """A known key seen where it must not be."""

    surface: str
    where: str
    key: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.key} in {self.surface} ({self.where}): ...{self.excerpt}..."


@dataclass
class Scanner:
    """Counts what it reads and keeps the leaks, those of the current test apart."""

    counts: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    pending: list[Leak] = field(default_factory=list)
    session_leaks: list[Leak] = field(default_factory=list)
    test_leaks: int = 0
    nodeid: str = ""

    def text(self, surface: str, text: str, detail: str = "") -> None:
        """Scan one text seen on ``surface``."""
        self.counts[surface] = self.counts.get(surface, 0) + 1
        self.bytes_read += len(text)
        for name, needle in NEEDLES:
            if needle in text:
                where = self.nodeid or "outside any test"
                where += f", {detail}" if detail else ""
                self.pending.append(Leak(surface, where, name, _excerpt(text, needle)))
                return

    def data(self, surface: str, data: bytes, detail: str = "", *, count: bool = True) -> None:
        """Scan bytes (decoded only when a key is in them); ``count=False``: part of an item
        already counted."""
        if any(n in data for _, n in _BYTE_NEEDLES):
            self.text(surface, data.decode("utf-8", "replace"), detail)
            if not count:
                self.counts[surface] -= 1
            return
        if count:
            self.counts[surface] = self.counts.get(surface, 0) + 1
        self.bytes_read += len(data)

    def take(self) -> list[Leak]:
        leaks, self.pending = self.pending, []
        return leaks

    def summary(self) -> str:
        leaks = len(self.session_leaks) + self.test_leaks
        parts = ", ".join(f"{n} {surface}" for surface, n in sorted(self.counts.items()))
        return f"secrets: {leaks} leaks in {parts} ({self.bytes_read:,} bytes)"


_scanners: list[Scanner] = []


def _active() -> Scanner | None:
    return _scanners[-1] if _scanners else None


# -- the known keys, issued by the simulator and the dry-run guard ----------------------


class _Secrets:
    """``dryrun``'s ``secrets`` module, with fake signature keys the scan recognises."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def token_hex(self, nbytes: int | None = None) -> str:
        value: str = self._real.token_hex(nbytes)
        return SIGNATURE_PREFIX + value[32:] if nbytes == 32 else value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _patch_keys(mp: pytest.MonkeyPatch) -> None:
    real_hex = IdFactory.hex_secret
    real_add = Simulator.add_api_key
    real_init = Simulator.__init__

    def hex_secret(self: IdFactory, nbytes: int = 32) -> str:
        value = real_hex(self, nbytes)
        return SIGNATURE_PREFIX + value[32:] if nbytes == 32 else value

    def add_api_key(self: Simulator, key: str | None = None, *, user_id: str | None = None) -> str:
        if key is None:
            key = f"{KNOWN_API_KEY}_k{len(self.state.api_keys)}"
        return real_add(self, key, user_id=user_id)

    def init(self: Simulator, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        old = self.api_key
        if KNOWN_API_KEY in old:
            return
        keys = self.state.api_keys
        new = KNOWN_API_KEY if KNOWN_API_KEY not in keys else f"{KNOWN_API_KEY}_k{len(keys)}"
        renamed = {(new if k == old else k): v for k, v in keys.items()}
        keys.clear()
        keys.update(renamed)
        self.api_key = new

    mp.setattr(IdFactory, "hex_secret", hex_secret)
    mp.setattr(Simulator, "add_api_key", add_api_key)
    mp.setattr(Simulator, "__init__", init)
    mp.setattr(dryrun, "secrets", _Secrets(getattr(dryrun, "secrets")))  # noqa: B009


# -- surfaces --------------------------------------------------------------------------


def _patch_logging(mp: pytest.MonkeyPatch) -> None:
    """Scan every record any logger creates (a record factory: handlers and ``propagate``
    do not hide one)."""
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        scanner = _active()
        if scanner is None:
            return record
        try:
            text = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            text += "\n" + record.stack_info
        scanner.text("log records", text, f"logger {record.name}")
        return record

    mp.setattr(logging, "_logRecordFactory", factory)


_depth = threading.local()


def _wrap_error_init(cls: type[BaseException], mp: pytest.MonkeyPatch) -> None:
    """Scan ``str``/``repr`` of ``cls`` instances once their outermost ``__init__`` is done."""
    real = cls.__dict__.get("__init__")
    if real is None or getattr(real, "_secrets_wrapped", False):
        return

    def init(self: BaseException, *args: Any, **kwargs: Any) -> None:
        _depth.n = getattr(_depth, "n", 0) + 1
        try:
            real(self, *args, **kwargs)
        finally:
            _depth.n -= 1
        scanner = _active()
        if _depth.n == 0 and scanner is not None:
            try:
                text = f"{self}\n{self!r}"
            except Exception as exc:  # an error whose str fails is another test's finding
                text = f"<str failed: {exc!r}>"
            scanner.text("error messages", text, type(self).__name__)

    init._secrets_wrapped = True  # type: ignore[attr-defined]
    mp.setattr(cls, "__init__", init)


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    sub: type
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _patch_errors(mp: pytest.MonkeyPatch) -> None:
    def base_init(self: BaseException, *args: Any, **kwargs: Any) -> None:
        Exception.__init__(self, *args)

    if "__init__" not in CloseguardError.__dict__:
        mp.setattr(CloseguardError, "__init__", base_init, raising=False)
    for cls in _subclasses(CloseguardError):
        _wrap_error_init(cls, mp)
    real_hook = CloseguardError.__dict__.get("__init_subclass__")

    def init_subclass(cls: type[CloseguardError], /, **kwargs: Any) -> None:
        if real_hook is not None:
            real_hook.__func__(cls, **kwargs)
        else:
            super(CloseguardError, cls).__init_subclass__(**kwargs)
        _wrap_error_init(cls, mp)

    mp.setattr(CloseguardError, "__init_subclass__", classmethod(init_subclass), raising=False)


def _http_modules() -> list[Any]:
    """httpx, and httpx2 where installed (Starlette's TestClient and the MCP client use it)."""
    modules: list[Any] = [httpx]
    with contextlib.suppress(ImportError):
        import httpx2

        modules.append(httpx2)
    return modules


def _is_mock(client: Any, url: Any, mock: type) -> bool:
    transport: Any = client._transport_for_url(url)
    for _ in range(10):
        if isinstance(transport, mock):
            return True
        inner = getattr(transport, "inner", None)
        if inner is None:
            return False
        transport = inner
    return False


def _scan_response(response: Any, body: bytes | None) -> None:
    scanner = _active()
    if scanner is None:
        return
    request = response.request
    detail = f"{request.method} {request.url.path} -> {response.status_code}"
    scanner.text("HTTP responses", str(response.headers.multi_items()), detail)
    if body is None:
        return
    if request.method == "POST" and WEBHOOK_CREATE.search(request.url.path):
        body = _without_signature_key(body)
    scanner.data("HTTP responses", body, detail, count=False)


def _without_signature_key(body: bytes) -> bytes:
    """A webhook-create answer minus its ``signature_key`` (Close returns it there)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        data.pop("signature_key", None)
    return json.dumps(data).encode()


class _ScannedStream:
    """A response stream scanned chunk by chunk (with the tail of the last chunk)."""

    def __init__(self, stream: Any, response: Any) -> None:
        self._stream = stream
        self._response = response
        self._tail = b""

    def _scan(self, chunk: bytes) -> None:
        scanner = _active()
        if scanner is not None:
            request = self._response.request
            detail = f"{request.method} {request.url.path} (streamed)"
            scanner.data("HTTP responses", self._tail + chunk, detail, count=False)
        self._tail = chunk[-96:]

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._scan(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self._scan(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()


def _patch_http(mp: pytest.MonkeyPatch, module: Any) -> None:
    real_send = module.Client.send
    real_asend = module.AsyncClient.send
    stream_type = type(
        "ScannedStream", (_ScannedStream, module.SyncByteStream, module.AsyncByteStream), {}
    )

    def after(client: Any, request: Any, response: Any, stream: bool) -> None:
        if _is_mock(client, request.url, module.MockTransport):
            return
        if stream:
            _scan_response(response, None)
            response.stream = stream_type(response.stream, response)
        else:
            _scan_response(response, response.content)

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        response = real_send(self, request, **kwargs)
        after(self, request, response, kwargs.get("stream", False))
        return response

    async def asend(self: Any, request: Any, **kwargs: Any) -> Any:
        response = await real_asend(self, request, **kwargs)
        after(self, request, response, kwargs.get("stream", False))
        return response

    mp.setattr(module.Client, "send", send)
    mp.setattr(module.AsyncClient, "send", asend)


def _allowed_cli_text(args: Any, text: str) -> str:
    """``sim serve`` prints its API key on purpose: that one line is not a leak."""
    argv = [str(a) for a in (args or [])]
    if argv[:2] == ["sim", "serve"]:
        return "\n".join(line for line in text.splitlines() if not line.startswith("API key: "))
    return text


def _patch_cli(mp: pytest.MonkeyPatch, runner: Any) -> None:
    real_invoke = runner.invoke

    def invoke(self: Any, cli: Any, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        result = real_invoke(self, cli, args, *rest, **kwargs)
        scanner = _active()
        if scanner is not None:
            parts = [result.output]
            with contextlib.suppress(ValueError):
                parts.append(result.stderr)
            if result.exception is not None:
                parts.append(repr(result.exception))
            argv = args if isinstance(args, list | tuple) else str(args or "").split()
            text = _allowed_cli_text(argv, "\n".join(parts))
            scanner.text("CLI outputs", text, "closeguard " + " ".join(map(str, argv))[:80])
        return result

    mp.setattr(runner, "invoke", invoke)


# -- files at the end ------------------------------------------------------------------


def _scan_sqlite(scanner: Scanner, path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            keep = [c for c in cols if (table, c) not in ALLOWED_COLUMNS]
            if not keep:
                continue
            select = ", ".join(f'"{c}"' for c in keep)
            for row in conn.execute(f'SELECT {select} FROM "{table}"'):
                for col, value in zip(keep, row, strict=True):
                    if isinstance(value, str):
                        value = value.encode()
                    if isinstance(value, bytes):
                        scanner.data("files", value, f"{path} {table}.{col}", count=False)
    finally:
        conn.close()
    scanner.counts["files"] = scanner.counts.get("files", 0) + 1


def scan_files(scanner: Scanner, root: Path) -> None:
    """Scan every file under ``root``: SQLite stores by column, the rest as bytes."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue  # read through the database itself
        try:
            with path.open("rb") as f:
                head = f.read(256)
            if head.startswith(b"SQLite format 3\x00"):
                _scan_sqlite(scanner, path)
                continue
            if WORLD_FORMAT.encode() in head:
                continue  # Close's own database, as the simulator saves it
            data = path.read_bytes()
        except (OSError, sqlite3.Error) as exc:
            scanner.text("files", f"unreadable: {exc}", str(path))
            continue
        scanner.data("files", data, str(path))


# -- pytest hooks ----------------------------------------------------------------------

_STATE = pytest.StashKey[tuple[Scanner, pytest.MonkeyPatch, int]]()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: not a child to log
        site = sys.modules.get("sitecustomize")
        if site is not None and hasattr(site, "uninstall"):
            site.uninstall()
    scanner = Scanner()
    mp = pytest.MonkeyPatch()
    _patch_keys(mp)
    _patch_errors(mp)
    for module in _http_modules():
        _patch_http(mp, module)
    _patch_cli(mp, click.testing.CliRunner)
    _patch_cli(mp, typer.testing.CliRunner)  # typer's is its own class, not click's
    _patch_logging(mp)
    cg = logging.getLogger("closeguard")
    level = cg.level
    cg.setLevel(logging.DEBUG)
    _scanners.append(scanner)
    config.stash[_STATE] = (scanner, mp, level)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    child_dir = basetemp / "secrets-children"
    child_dir.mkdir(exist_ok=True)
    mp = config.stash[_STATE][1]
    mp.setenv(CHILD_LOG_ENV, str(child_dir))
    path = os.environ.get("PYTHONPATH", "")
    mp.setenv("PYTHONPATH", str(SITE_DIR) + (os.pathsep + path if path else ""))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    scanner = _active()
    if scanner is not None:
        scanner.session_leaks.extend(scanner.take())
        scanner.nodeid = item.nodeid
    try:
        return (yield)
    finally:
        if scanner is not None:
            scanner.nodeid = ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    scanner = _active()
    if scanner is None:
        return report
    seen = item.stash.get(_SECTIONS, 0)
    for when, key, content in item._report_sections[seen:]:
        scanner.text("captured outputs", content, f"{when} {key}")
    item.stash[_SECTIONS] = len(item._report_sections)
    if report.failed and report.longrepr is not None:
        scanner.text("failure texts", str(report.longrepr), report.when)
    leaks = scanner.take()
    if leaks:
        scanner.test_leaks += len(leaks)
        text = "known key leaked:\n" + "\n".join(f"  {leak}" for leak in leaks)
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("secrets", text))
    return report


_SECTIONS = pytest.StashKey[int]()


_WORKER_OUTPUT = "closeguard_secrets"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Scan the files under basetemp and fail the session on any leak outside a test.

    Under pytest-xdist a worker scans no files (its basetemp is a folder of the
    controller's, which scans them all once) and hands its counts and leaks to the
    controller (``pytest_testnodedown``), which alone reports and sets the exit status."""
    config = session.config
    scanner = config.stash[_STATE][0]
    scanner.session_leaks.extend(scanner.take())
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_OUTPUT] = {
            "counts": scanner.counts,
            "bytes_read": scanner.bytes_read,
            "test_leaks": scanner.test_leaks,
            "session_leaks": [vars(leak) for leak in scanner.session_leaks],
        }
        return
    factory = config._tmp_path_factory  # type: ignore[attr-defined]
    basetemp = factory._basetemp
    if basetemp is not None and Path(basetemp).exists():
        scan_files(scanner, Path(basetemp))
        scanner.session_leaks.extend(scanner.take())
    if scanner.session_leaks and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: add a finished worker's counts and leaks to its own."""
    output = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    config = node.config
    if output is None or _STATE not in config.stash:
        return
    scanner = config.stash[_STATE][0]
    for surface, n in output["counts"].items():
        scanner.counts[surface] = scanner.counts.get(surface, 0) + n
    scanner.bytes_read += output["bytes_read"]
    scanner.test_leaks += output["test_leaks"]
    scanner.session_leaks.extend(Leak(**leak) for leak in output["session_leaks"])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    scanner = config.stash[_STATE][0]
    if scanner.session_leaks:
        terminalreporter.section("secrets: leaks outside tests or in files", red=True)
        for leak in scanner.session_leaks:
            terminalreporter.line(str(leak))
    terminalreporter.write_line(scanner.summary())


def pytest_unconfigure(config: pytest.Config) -> None:
    scanner, mp, level = config.stash[_STATE]
    logging.getLogger("closeguard").setLevel(level)
    mp.undo()
    if scanner in _scanners:
        _scanners.remove(scanner)
