"""The ``closeguard`` command (Typer + Rich). One module per command group; nothing imports cli.

Sub-commands are registered in ``_app.py``; each group module only builds its Typer app.
"""

from closeguard.cli._app import app, main

__all__ = ["app", "main"]
