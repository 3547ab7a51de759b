"""The `broadcaster` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

import broadcaster
from approvals.roles import Role
from broadcaster import audit, users
from broadcaster.auth import totp
from broadcaster.auth.passwords import WeakPassword
from broadcaster.auth.tokens import (
    NotTheirToken,
    Revocation,
    TokenInfo,
    TokenNotFound,
    create_token,
    created_details,
    list_tokens,
    revoke_all_tokens,
    revoke_token,
    revoked_all_details,
    revoked_details,
)
from broadcaster.cli_bench_dispatch import add_dispatch_bench
from broadcaster.cli_bench_inbound import add_inbound_bench
from broadcaster.cli_contacts import add_contacts_commands
from broadcaster.cli_types import positive_int
from broadcaster.logs import configure_logging
from broadcaster.settings import ConfigError, LoadedSettings, load_settings
from broadcaster.storage import migrate
from broadcaster.storage.engine import create_engine
from broadcaster.storage.migrate import SchemaOutOfDate

T = TypeVar("T")
EXIT_USAGE = 2
EXIT_FAILED = 1
ROLE_NAMES = [role.value for role in Role]


class CommandError(Exception):
    """A command that could not do what was asked; the message is for the person who asked."""


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _audit_entry(action: str, subject: str, **details: object) -> audit.AuditEntry:
    return audit.AuditEntry(
        actor=_cli_actor(),
        action=action,
        subject=subject,
        source_address="local",
        details=dict(details) or None,
    )


async def _with_engine(
    loaded: LoadedSettings,
    work: Callable[[AsyncEngine], Awaitable[T]],
    *,
    migrate_sqlite: bool = True,
) -> T:
    from broadcaster.storage.database import open_database

    engine = (
        await open_database(loaded.settings.database)
        if migrate_sqlite
        else create_engine(loaded.settings.database)
    )
    try:
        return await work(engine)
    finally:
        await engine.dispose()


# --- commands ----------------------------------------------------------------------------------


def cmd_serve(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    from broadcaster import event_loop
    from broadcaster.service import serve

    event_loop.run(serve(loaded, host=args.host, port=args.port))


def cmd_worker(loaded: LoadedSettings, _args: argparse.Namespace) -> None:
    from broadcaster import event_loop
    from broadcaster.service import run_worker

    event_loop.run(run_worker(loaded))


def cmd_demo(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    from broadcaster import event_loop
    from broadcaster.demo import run_demo

    event_loop.run(run_demo(loaded, port=args.port))


def cmd_db_upgrade(loaded: LoadedSettings, _args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> str | None:
        await migrate.upgrade(engine)
        return await migrate.current_revision(engine)

    revision = asyncio.run(_with_engine(loaded, work, migrate_sqlite=False))
    print(f"database is at revision {revision} (head)")


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password and whether we made it up (and so must show it once)."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("--password-stdin was given but standard input had no password")
        return password, False
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise CommandError("the two passwords differ; nothing was changed")
        return first, False
    return secrets.token_urlsafe(15), True


def cmd_user_add(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    users.check_username(args.username)
    password, generated = _read_password(args)

    async def work(engine: AsyncEngine) -> users.User:
        async with engine.begin() as connection:
            user = await users.add_user(
                connection,
                args.username,
                Role(args.role),
                password=password,
                display_name=args.display_name,
                rank=args.rank,
            )
            await audit.append(
                connection,
                _audit_entry(
                    "user.add", f"user:{user.username}", role=user.role.value, rank=user.rank
                ),
            )
            return user

    user = asyncio.run(_with_engine(loaded, work))
    print(f"added {user.username} ({user.role.value}, rank {user.rank})")
    if generated:
        print(f"password (shown once): {password}")


def cmd_user_list(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> list[users.User]:
        async with engine.connect() as connection:
            return await users.list_users(connection)

    people = asyncio.run(_with_engine(loaded, work))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "username": u.username,
                        "display_name": u.display_name,
                        "role": u.role.value,
                        "rank": u.rank,
                        "active": u.active,
                    }
                    for u in people
                ],
                indent=2,
            )
        )
        return
    if not people:
        print("no users yet: add one with `broadcaster user add USERNAME --role ROLE`")
        return
    print(f"{'USERNAME':<20} {'ROLE':<14} {'RANK':>4}  {'ACTIVE':<6} DISPLAY NAME")
    for u in people:
        print(
            f"{u.username:<20} {u.role.value:<14} {u.rank:>4}  "
            f"{'yes' if u.active else 'no':<6} {u.display_name}"
        )


def cmd_user_set_role(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> tuple[users.User, Role]:
        async with engine.begin() as connection:
            user, before = await users.set_role(connection, args.username, Role(args.role))
            await audit.append(
                connection,
                _audit_entry(
                    "user.set_role",
                    f"user:{user.username}",
                    before=before.value,
                    after=user.role.value,
                ),
            )
            return user, before

    user, before = asyncio.run(_with_engine(loaded, work))
    print(f"{user.username}: {before.value} -> {user.role.value}")


def cmd_user_totp(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> totp.Enrolment:
        async with engine.begin() as connection:
            user = await users.require_user(connection, args.username)
            enrolment = await totp.enrol(connection, user.id, user.username)
            await audit.append(connection, _audit_entry("user.totp_enrol", f"user:{user.username}"))
            return enrolment

    enrolment = asyncio.run(_with_engine(loaded, work))
    # The secret goes to stdout only: hand it to the person, never to a log.
    print(enrolment.uri)
    print(
        "Add this to the person's authenticator app (the URI carries the secret); it replaces "
        "any earlier second factor.",
        file=sys.stderr,
    )


def cmd_token_create(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    valid_for = timedelta(days=args.days) if args.days else None

    async def work(engine: AsyncEngine) -> str:
        async with engine.begin() as connection:
            user = await users.require_user(connection, args.username)
            issued = await create_token(connection, user.id, args.name, valid_for=valid_for)
            await audit.append(
                connection,
                _audit_entry(
                    "token.create", f"user:{user.username}", **created_details(issued, args.name)
                ),
            )
            return issued.value

    token = asyncio.run(_with_engine(loaded, work))
    # The token goes to stdout alone, so `TOKEN=$(broadcaster token create alice)` works.
    print(token)
    print(
        "Keep this token secret; it is shown only once. "
        "Send it as 'Authorization: Bearer <token>'.",
        file=sys.stderr,
    )


def _when(moment: datetime | None, never: str = "-") -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else never


def cmd_token_list(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> list[TokenInfo]:
        async with engine.connect() as connection:
            user = await users.require_user(connection, args.username)
            return await list_tokens(connection, user.id)

    tokens = asyncio.run(_with_engine(loaded, work))
    if not tokens:
        print(
            f"{args.username} has no API tokens: create one with "
            f"`broadcaster token create {args.username}`"
        )
        return
    now = datetime.now(UTC)
    print(
        f"{'ID':>6}  {'NAME':<20} {'PREFIX':<13} {'CREATED':<20} {'EXPIRES':<20} "
        f"{'LAST USED':<20} STATE"
    )
    for token in tokens:
        state = token.state(now).value
        if token.revoked_at is not None:
            state += f" {_when(token.revoked_at)}"
        print(
            f"{token.id:>6}  {token.name:<20} {token.prefix + '...':<13} "
            f"{_when(token.created_at):<20} {_when(token.expires_at, 'never'):<20} "
            f"{_when(token.last_used_at, 'never'):<20} {state}"
        )


def _describe(token: TokenInfo) -> str:
    return f"API token {token.id} ({token.name}, {token.prefix}...)"


def cmd_token_revoke(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    if (args.token_id is None) == (not args.all):
        print(
            "broadcaster token revoke: give a TOKEN_ID (see `broadcaster token list "
            f"{args.username}`) or --all, one of the two",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)
    now = datetime.now(UTC)

    async def one(engine: AsyncEngine) -> Revocation:
        async with engine.begin() as connection:
            user = await users.require_user(connection, args.username)
            try:
                done = await revoke_token(connection, args.token_id, user_id=user.id, now=now)
            except TokenNotFound:
                raise CommandError(f"there is no API token {args.token_id}") from None
            except NotTheirToken:
                raise CommandError(
                    f"API token {args.token_id} is not one of {user.username}'s tokens; "
                    "nothing was revoked"
                ) from None
            # Audited with the token's id and name only: never its value, prefix or hash.
            await audit.append(
                connection,
                _audit_entry("token.revoke", f"user:{user.username}", **revoked_details(done)),
            )
            return done

    async def every(engine: AsyncEngine) -> list[TokenInfo]:
        async with engine.begin() as connection:
            user = await users.require_user(connection, args.username)
            revoked = await revoke_all_tokens(connection, user.id, now=now)
            await audit.append(
                connection,
                _audit_entry(
                    "token.revoke_all", f"user:{user.username}", **revoked_all_details(revoked)
                ),
            )
            return revoked

    if args.all:
        revoked = asyncio.run(_with_engine(loaded, every))
        if not revoked:
            print(f"{args.username} has no live API tokens; nothing to revoke")
        for token in revoked:
            print(f"revoked {_describe(token)} of {args.username}")
        return
    done = asyncio.run(_with_engine(loaded, one))
    if done.already:
        print(
            f"{_describe(done.token)} of {args.username} was already revoked "
            f"({_when(done.token.revoked_at)}); nothing changed"
        )
    else:
        print(f"revoked {_describe(done.token)} of {args.username}")


def cmd_audit_verify(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    async def work(engine: AsyncEngine) -> audit.Verification:
        async with engine.connect() as connection:
            return await audit.verify(connection)

    result = asyncio.run(_with_engine(loaded, work))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    elif result.intact:
        print(f"audit log intact: {result.entries} entries, head {result.head_hash}")
    else:
        print(f"AUDIT LOG TAMPERED: {len(result.problems)} problem(s) in {result.entries} entries")
        for problem in result.problems:
            print(f"  entry {problem.seq}: {problem.kind.value}: {problem.message}")
    if not result.intact:
        raise SystemExit(EXIT_FAILED)


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command: `broadcaster --config X serve` or
    # `broadcaster serve --config X`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="settings file (default: $BROADCASTER_CONFIG, else ./config/broadcaster.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="broadcaster",
        description="Crisis Broadcaster: approved emergency alerts to every public channel.",
        parents=[common],
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {broadcaster.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[LoadedSettings, argparse.Namespace], None],
        summary: str,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=summary, description=summary, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    serve = command(
        commands, "serve", cmd_serve, "Run the web service and API (and an in-process worker)."
    )
    serve.add_argument("--host", help="listen address (default: server.host)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port)")

    command(
        commands, "worker", cmd_worker, "Run a delivery worker that shares the database's outbox."
    )

    demo = command(
        commands,
        "demo",
        cmd_demo,
        "Run everything on embedded defaults with demo users and the platform emulators.",
    )
    demo.add_argument("--port", type=int, help="listen port (default: server.port)")

    db = commands.add_parser(
        "db", help="Database schema commands.", description="Database schema commands."
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    command(db_commands, "upgrade", cmd_db_upgrade, "Bring the database schema up to this version.")

    user = commands.add_parser(
        "user", help="Manage people and roles.", description="Manage people and roles."
    )
    user_commands = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = command(user_commands, "add", cmd_user_add, "Add a user with a role.")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_NAMES)
    add.add_argument("--display-name", help="the name people see (default: the username)")
    add.add_argument("--rank", type=int, default=0, help="chain-of-command rank (default: 0)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input "
        "(otherwise asked for, or generated and shown once)",
    )
    listing = command(user_commands, "list", cmd_user_list, "List users and their roles.")
    listing.add_argument("--json", action="store_true", help="print JSON")
    set_role = command(user_commands, "set-role", cmd_user_set_role, "Change a user's role.")
    set_role.add_argument("username")
    set_role.add_argument("role", choices=ROLE_NAMES)
    enrol = command(
        user_commands,
        "totp",
        cmd_user_totp,
        "Enrol (or re-enrol) a user's TOTP second factor; prints the otpauth:// URI.",
    )
    enrol.add_argument("username")

    token = commands.add_parser(
        "token", help="Manage API tokens.", description="Manage API tokens."
    )
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = command(
        token_commands, "create", cmd_token_create, "Create a bearer API token for a user."
    )
    create.add_argument("username")
    create.add_argument("--name", default="api", help="what the token is for (default: api)")
    create.add_argument(
        "--days", type=positive_int, help="expire after this many days (default: never)"
    )
    token_list = command(
        token_commands,
        "list",
        cmd_token_list,
        "List a user's API tokens: id, name, prefix, when created, expires and last used, "
        "and whether revoked (never the token itself).",
    )
    token_list.add_argument("username")
    revoke = command(
        token_commands,
        "revoke",
        cmd_token_revoke,
        "Revoke one of a user's API tokens (by the id `token list` shows), or --all of their "
        "live ones; it stops working at once (audited).",
    )
    revoke.add_argument("username")
    revoke.add_argument("token_id", nargs="?", type=positive_int, metavar="TOKEN_ID")
    revoke.add_argument("--all", action="store_true", help="revoke every live token of the user")

    audit_group = commands.add_parser("audit", help="The audit log.", description="The audit log.")
    audit_commands = audit_group.add_subparsers(
        dest="audit_command", metavar="COMMAND", required=True
    )
    verify = command(
        audit_commands,
        "verify",
        cmd_audit_verify,
        "Check the audit log's hash chain; exit 1 if broken.",
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    add_contacts_commands(commands, parents=[common])

    bench = commands.add_parser(
        "bench",
        help="Measure the service's speed (prints figures).",
        description="Measure the service's speed (prints figures).",
    )
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)
    add_inbound_bench(bench_commands, parents=[common])
    add_dispatch_bench(bench_commands, parents=[common])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        loaded = load_settings(getattr(args, "config", None))
        configure_logging(loaded.settings.logging)
        args.handler(loaded, args)
    except ConfigError as error:
        print(f"broadcaster: configuration error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except (CommandError, users.UserError, WeakPassword, SchemaOutOfDate) as error:
        print(f"broadcaster: {error}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
