"""A store that cannot be opened is one clear error, in Python and on the command line."""

from __future__ import annotations

import pytest

from closeguard.cli import main
from closeguard.store import Store
from closeguard.tools.errors import StoreError


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo://x", "Can't load plugin"),
        ("postgresql+psycopg://bob:hunter2@127.0.0.1:1/nope", "Connection refused"),
        ("not a url at all", "store at"),
    ],
)
def test_unopenable_store_raises_store_error_without_password(url: str, says: str) -> None:
    with pytest.raises(StoreError) as err:
        Store(url)
    assert says in str(err.value)
    assert "hunter2" not in str(err.value)


def test_cli_prints_one_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x")
    monkeypatch.setattr("sys.argv", ["closeguard", "audit", "tail"])
    with pytest.raises(SystemExit) as code:
        main()
    assert code.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the store") and err.count("\n") == 1
    assert "hunter2" not in err and "Traceback" not in err
