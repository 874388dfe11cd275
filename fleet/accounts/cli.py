"""``wardsight fleet operator``: operator accounts and API tokens from the server's own machine.

Each change is written to the audit log as done by ``cli:<os user>`` (:func:`fleet.audit.log.cli_actor`). This
module imports ``fleet.cli``'s helpers, so ``fleet.cli`` must not import it at its top: attach it with
``fleet.add_command(operators_cli)`` after ``fleet.cli`` is loaded (e.g. in ``wardsight_cli.main._register``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from fleet.accounts import service, store
from fleet.accounts.rules import MAX_TOKEN_LIFETIME, OperatorError, validate_role, validate_username
from fleet.audit.log import cli_actor
from fleet.auth.operator import ROLES
from fleet.cliconfig import config_option
from fleet.cliconfig import load_config as _config
from fleet.cliconfig import open_db as _db
from fleet.config import ServerConfig
from fleet.store.connection import Database
from wardsight.clictx import Context, pass_context

ROLE_CHOICE = click.Choice(ROLES)


@contextmanager
def _database(config: ServerConfig) -> Iterator[Database]:
    fleet_db = _db(config)
    try:
        yield fleet_db.db
    finally:
        fleet_db.close()


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except OperatorError as exc:
        raise click.ClickException(str(exc)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.group("operator")
def operators_cli() -> None:
    """Operator accounts (viewer, operator, admin) and API tokens.

    \b
    Example:
        wardsight fleet operator add alice --role admin
    """


@operators_cli.command("add")
@click.argument("username")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, operator or admin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@config_option
@pass_context
def add(ctx: Context, username: str, role: str, password_stdin: bool, config_path: Path | None) -> None:
    """Add an operator; the password (at least 12 characters) is asked twice, hidden.

    \b
    Example:
        wardsight fleet operator add alice --role admin
        printf '%s\\n' "$PW" | wardsight fleet operator add bob --role viewer --password-stdin
    """
    config = _config(ctx, config_path)
    with _refusals():
        validate_username(username)
        password = _read_password(password_stdin)
        with _database(config) as db:
            service.create_operator(db, username, password, validate_role(role), time.time(), config, actor=cli_actor())
    click.echo(f"added {role} '{username}'")


@operators_cli.command("list")
@config_option
@pass_context
def list_command(ctx: Context, config_path: Path | None) -> None:
    """List operators as JSON lines (never their password hashes).

    \b
    Example:
        wardsight fleet operator list
    """
    with _database(_config(ctx, config_path)) as db:
        for row in store.list_operators(db):
            click.echo(json.dumps(row))


def _update(ctx: Context, config_path: Path | None, username: str, **change: Any) -> dict[str, Any]:
    with _refusals(), _database(_config(ctx, config_path)) as db:
        return service.apply_update(db, username, actor=cli_actor(), now=time.time(), **change)


@operators_cli.command("set-role")
@click.argument("username")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, operator or admin.")
@config_option
@pass_context
def set_role(ctx: Context, username: str, role: str, config_path: Path | None) -> None:
    """Change an operator's role (takes effect on their next request).

    \b
    Example:
        wardsight fleet operator set-role bob --role operator
    """
    _update(ctx, config_path, username, role=role)
    click.echo(f"'{username}' is now {role}")


def _state_command(word: str, disabled: bool, help_text: str) -> None:
    """``operator disable`` and ``operator enable``: one command each, told apart by the state they set."""

    @operators_cli.command(word, help=help_text)
    @click.argument("username")
    @config_option
    @pass_context
    def command(ctx: Context, username: str, config_path: Path | None) -> None:
        _update(ctx, config_path, username, disabled=disabled)
        click.echo(f"'{username}' is {word}d")


_state_command(
    "disable",
    True,
    """Disable an operator and end their sessions at once (the last enabled admin cannot be disabled).

    \b
    Example:
        wardsight fleet operator disable bob
    """,
)
_state_command(
    "enable",
    False,
    """Enable a disabled operator again.

    \b
    Example:
        wardsight fleet operator enable bob
    """,
)


@operators_cli.group("api-token")
def api_token() -> None:
    """API tokens for scripts and integrations (``Authorization: Bearer wsa.…``).

    \b
    Example:
        wardsight fleet operator api-token create --name nightly-report --role viewer
    """


@api_token.command("create")
@click.option("--name", required=True, help="What the token is for (1-64 letters, digits, spaces or . _ : -).")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, operator or admin.")
@click.option(
    "--expires-in",
    type=click.IntRange(60, MAX_TOKEN_LIFETIME),
    default=None,
    help="Lifetime in seconds (default: until revoked).",
)
@config_option
@pass_context
def api_token_create(ctx: Context, name: str, role: str, expires_in: int | None, config_path: Path | None) -> None:
    """Create an API token and print it once (only its hash is stored).

    \b
    Example:
        wardsight fleet operator api-token create --name nightly-report --role viewer --expires-in 86400
    """
    now = time.time()
    with _refusals(), _database(_config(ctx, config_path)) as db:
        token = service.create_api_token(
            db,
            name,
            validate_role(role),
            cli_actor(),
            now,
            now + expires_in if expires_in is not None else None,
        )
    click.echo(token)
