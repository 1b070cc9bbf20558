"""The ``sessionshift`` command: the same engines the Ansible modules call, for a shell.

    sessionshift analyze  --session-dir /var/lib/app/sessions
    sessionshift migrate  --session-dir ... --redis-url rediss://host:6379/0 --redis-user app \\
                          --redis-password-file /etc/sessionshift/redis-password
    sessionshift validate --session-dir ... --redis-url ... --sample-percent 10
    sessionshift phases --json

Adding a subcommand: write ``cmd_<name>(args) -> int`` and ``register_<name>(subparsers)``
(reuse ``add_redis_options`` / ``add_session_options`` / ``add_output_options``), then list
the register function in ``SUBCOMMANDS``. Exit codes: 0 ok, 1 the run completed but its
check failed (validation below the threshold), 2 an error (bad input, Redis unreachable).

The Redis password never appears on the command line (``ps`` would show it): it comes from
``--redis-password-file`` or the ``SESSIONSHIFT_REDIS_PASSWORD`` environment variable.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import Any

from .defaults import BATCH_SIZE
from .errors import SessionshiftError
from .formats import DEFAULT_PREFIX, HASH_NAMES, HEADER_STYLES, SERIALIZERS
from .state import DEFAULT_STATE_DIR

PASSWORD_ENV = "SESSIONSHIFT_REDIS_PASSWORD"  # noqa: S105 - the variable name, not a secret
EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR = 0, 1, 2


class CliError(SessionshiftError):
    """A problem the operator must fix; printed as one line, exit code 2."""


# --------------------------------------------------------------------------- shared options


def add_redis_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Redis")
    group.add_argument("--redis-url", default=os.environ.get("SESSIONSHIFT_REDIS_URL"),
                       help="rediss://host:port/db (TLS) or redis://...; env SESSIONSHIFT_REDIS_URL")
    group.add_argument("--redis-user", default=os.environ.get("SESSIONSHIFT_REDIS_USER"),
                       help="ACL user; env SESSIONSHIFT_REDIS_USER")
    group.add_argument("--redis-password-file", metavar="PATH",
                       help=f"file holding the password / AUTH token (else env {PASSWORD_ENV})")
    group.add_argument("--ca-file", metavar="PATH", help="CA bundle that signed the Redis certificate")
    group.add_argument("--cluster", action="store_true", help="Redis Cluster (cluster mode enabled)")
    group.add_argument("--no-verify-tls", dest="verify_tls", action="store_false",
                       help="do not verify the server certificate: a throw-away test setup only "
                            "(warned on every run; the phase-2 gate refuses it)")


def add_session_options(parser: argparse.ArgumentParser, *, state: bool = True) -> None:
    group = parser.add_argument_group("sessions")
    group.add_argument("--session-dir", required=True, metavar="PATH",
                       help="the Flask-Session / cachelib FileSystemCache directory")
    group.add_argument("--key-prefix", default=DEFAULT_PREFIX, help=f"default {DEFAULT_PREFIX!r}")
    add_profile_options(group)
    if state:
        group.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="PATH",
                           help=f"checkpoints and results (default {DEFAULT_STATE_DIR})")
    add_budget_options(parser)


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """Limits on decoding one session; a session over one is reported and skipped (docs/security.md)."""
    from .safepickle import Budget

    group = parser.add_argument_group("decoding budget (per session; env SESSIONSHIFT_MAX_*)")
    for name, what in (("max_session_bytes", "largest file or value, bytes"),
                       ("max_depth", "deepest nesting"),
                       ("max_objects", "most values, counted while decoding"),
                       ("max_encoded_bytes", "largest size written out without shared references")):
        group.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", dest=f"budget_{name}",
                           help=f"{what} (default {getattr(Budget, name):,})")


def apply_budget(args: argparse.Namespace) -> None:
    from .safepickle import configure

    changes = {name[len("budget_"):]: value for name, value in vars(args).items()
               if name.startswith("budget_")}
    for name, value in changes.items():
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be a positive integer, not {value}")
    configure(**changes)


def add_profile_options(group, *, files: bool = False) -> None:
    """The settings the source profile decides; given ones must agree with it."""
    group.add_argument("--hash-method", choices=HASH_NAMES,
                       help="cachelib file name hash: md5 before cachelib 0.16, sha256 since "
                            "(default: the recorded source profile)")
    group.add_argument("--serializer", choices=SERIALIZERS,
                       help="Redis value format: pickle (exact, the default) or msgpack (only for "
                            "sessions analyze proved msgpack-exact) (default: the recorded profile)")
    if files:
        group.add_argument("--header-style", choices=HEADER_STYLES,
                           help="struct for cachelib >= 0.7, pickle for older (default: the profile)")
        group.add_argument("--pickle-protocol", type=int, choices=range(0, 6), metavar="N",
                           help="pickle protocol of the files written (default: the profile's; "
                                "never newer than the source's)")


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"hash_name": getattr(args, "hash_method", None), "serializer": getattr(args, "serializer", None),
            "header_style": getattr(args, "header_style", None),
            "pickle_protocol": getattr(args, "pickle_protocol", None)}


def resolve_profile(args: argparse.Namespace, needs=("serializer",)):
    """Fill the profile's settings into *args* (given ones checked against the recorded profile)."""
    from .profile import resolve

    resolved = resolve(getattr(args, "state_dir", None), getattr(args, "session_dir", None),
                       given_settings(args), style="cli", needs=needs)
    args.hash_method, args.serializer = resolved.hash_name, resolved.serializer
    args.header_style, args.pickle_protocol = resolved.header_style, resolved.pickle_protocol
    return resolved


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def read_password(args: argparse.Namespace) -> str | None:
    path = getattr(args, "redis_password_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise CliError(f"cannot read --redis-password-file {path}: {exc.strerror or exc}") from None
    return os.environ.get(PASSWORD_ENV) or None


def redis_settings_from_args(args: argparse.Namespace):
    from .redisconn import INSECURE_TLS_WARNING, RedisSettings

    if not args.redis_url:
        raise CliError("--redis-url (or SESSIONSHIFT_REDIS_URL) is required for this command")
    settings = RedisSettings(url=args.redis_url, username=args.redis_user, password=read_password(args),
                             ca_file=args.ca_file, verify_tls=args.verify_tls, cluster=args.cluster)
    try:
        settings.check()
    except ValueError as exc:
        raise CliError(f"--redis-url / --ca-file: {exc}") from None
    if settings.insecure and not getattr(args, "_warned_tls", False):
        print(f"sessionshift {args.command}: WARNING: {INSECURE_TLS_WARNING}", file=sys.stderr)
        args._warned_tls = True
    return settings


def connect_from_args(args: argparse.Namespace):
    from .redisconn import connect

    return connect(redis_settings_from_args(args))


def layout_from_args(args: argparse.Namespace):
    """The key layout, in the generation this host's phase file names (see phasefile)."""
    from .phasefile import host_layout

    return host_layout(getattr(args, "state_dir", None), args.key_prefix, args.hash_method)


def progress_bar(args: argparse.Namespace):
    """A progress callback: a terminal line on stderr, or nothing."""
    from .progress import ProgressBar

    bar = ProgressBar(sys.stderr)
    if getattr(args, "quiet", False):
        bar.enabled = False
    return bar


def emit(args: argparse.Namespace, result: dict[str, Any], summary: str) -> None:
    """The result: JSON on stdout with --json, else the one-paragraph summary."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(summary)


def _check_dir(path: str) -> None:
    if not os.path.isdir(path):
        raise CliError(f"session directory {path} does not exist or is not a directory")


def session_source(args: argparse.Namespace) -> dict:
    """The session files and how to read them (migrate's and validate's configuration): the
    directory checked, the settings resolved against the source profile."""
    _check_dir(args.session_dir)
    resolve_profile(args)
    return dict(session_dir=args.session_dir, layout=layout_from_args(args), serializer=args.serializer,
                pickle_protocol=args.pickle_protocol)


# --------------------------------------------------------------------------- subcommands


def cmd_phases(args: argparse.Namespace) -> int:
    from .phases import SPECS

    rows = [{"number": int(spec.phase), "label": spec.phase.label, "writes_file": spec.writes_file,
             "writes_redis": spec.writes_redis, "reads": list(spec.reads_from),
             "promotes_file_reads": spec.promotes_file_reads, "tombstones": spec.writes_tombstones,
             "gate": spec.gate, "summary": spec.summary} for spec in SPECS.values()]
    if args.json:
        json.dump({"phases": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for row in rows:
        print(f"{row['number']}  {row['label']:<11} {row['summary']}")
        print(f"   {'':<11} gate: {row['gate']}")
    return EXIT_OK


def register_phases(subparsers) -> None:
    parser = subparsers.add_parser("phases", help="the phase table (what each phase reads, writes, needs)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_phases)


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import AnalyzeConfig, analyze, summary
    from .keys import KeyLayout
    from .options import at_least

    _check_dir(args.session_dir)
    at_least("--sample-size", args.sample_size, 1)
    given = given_settings(args)
    client = connect_from_args(args) if args.redis_url else None
    config = AnalyzeConfig(session_dir=args.session_dir,
                           layout=KeyLayout(prefix=args.key_prefix, hash_name=args.hash_method or "sha256"),
                           serializer=given.pop("serializer"), given=given,
                           state_dir=None if args.no_record else args.state_dir,
                           sample_size=args.sample_size, workers=args.workers)
    try:
        with progress_bar(args) as bar:
            result = analyze(config, client=client, progress=bar)
    finally:
        if client is not None:
            client.close()
    emit(args, result, summary(result))
    return EXIT_CHECK_FAILED if result["refused"] else EXIT_OK


def register_analyze(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="detect the files' format (records the source profile every tool reads); "
                        "count sessions, sizes, expiries, bad files; estimate the migration time")
    add_session_options(parser)
    parser.add_argument("--header-style", choices=HEADER_STYLES, help="checked against the files")
    parser.add_argument("--pickle-protocol", type=int, choices=range(0, 6), metavar="N",
                        help="checked against the files")
    parser.add_argument("--no-record", action="store_true", help="do not write profile.json")
    add_redis_options(parser)
    parser.add_argument("--sample-size", type=int, default=500,
                        help="sessions timed to estimate the migration (default 500)")
    parser.add_argument("--workers", type=int, default=0, help="the migrate worker count to assume")
    add_output_options(parser)
    parser.set_defaults(func=cmd_analyze)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import MigrateConfig, migrate, summary

    config = MigrateConfig(**session_source(args), state_dir=args.state_dir,
                           batch_size=args.batch_size, workers=args.workers, dry_run=args.dry_run,
                           restart=args.restart, retry_seconds=args.retry_seconds)
    with progress_bar(args) as bar:
        result = migrate(redis_settings_from_args(args), config, progress=bar)
    emit(args, result.as_dict(), summary(result))
    return EXIT_OK


def register_migrate(subparsers) -> None:
    parser = subparsers.add_parser(
        "migrate", help="backfill: copy file sessions to Redis where absent (SET NX EXAT, tombstones)")
    add_session_options(parser)
    add_redis_options(parser)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"sessions per pipeline (default {BATCH_SIZE})")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes (default: the CPU count, capped)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would be written; write nothing (no checkpoint either)")
    parser.add_argument("--restart", action="store_true",
                        help="ignore an unfinished checkpoint and scan every share again")
    parser.add_argument("--retry-seconds", type=float, default=30.0,
                        help="how long to keep retrying while Redis is unreachable (default 30)")
    add_output_options(parser)
    parser.set_defaults(func=cmd_migrate)


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import ValidateConfig, record, summary, validate

    config = ValidateConfig(**session_source(args), sample_percent=args.sample_percent,
                            threshold=args.threshold, recheck_delay=args.recheck_delay,
                            max_examples=args.max_examples, workers=args.workers)
    client = connect_from_args(args)
    try:
        with progress_bar(args) as bar:
            result = validate(client, config, progress=bar)
    finally:
        client.close()
    if not args.no_record:
        record(args.state_dir, result)
    emit(args, result, summary(result))
    return EXIT_OK if result["passed"] else EXIT_CHECK_FAILED


def register_validate(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="compare file sessions with Redis as the app reads them; gate phase 3")
    add_session_options(parser)
    add_redis_options(parser)
    parser.add_argument("--sample-percent", type=float, default=100.0,
                        help="validate this share of the sessions (default 100: all)")
    parser.add_argument("--threshold", type=float, default=100.0,
                        help="minimum %% of comparable sessions that must match (default 100)")
    parser.add_argument("--recheck-delay", type=float, default=2.0,
                        help="seconds before a difference is re-checked (live traffic heals some)")
    parser.add_argument("--max-examples", type=int, default=20, help="file names listed per problem")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes (default: the CPU count, capped)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not write validation.json (the phase-3 gate reads it)")
    add_output_options(parser)
    parser.set_defaults(func=cmd_validate)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_sessions
    from .options import file_mode

    _check_dir(args.session_dir)
    resolve_profile(args, needs=("hash_name", "serializer", "header_style", "pickle_protocol"))
    if args.from_backup:
        return _export_from_backup(args)
    client = connect_from_args(args)
    try:
        with progress_bar(args) as bar:
            result = export_sessions(
                client, layout_from_args(args), args.session_dir, serializer=args.serializer,
                header_style=args.header_style, protocol=args.pickle_protocol,
                mode=file_mode(args.mode, "--mode"), uid=args.uid, gid=args.gid,
                state_dir=None if args.no_record else args.state_dir, batch_size=args.batch_size,
                workers=args.workers, dry_run=args.dry_run, progress=bar)
    finally:
        client.close()
    emit(args, result.as_dict(),
         f"{'would write' if args.dry_run else 'wrote'} {result.written} file(s), "
         f"{result.unchanged} unchanged, {result.removed} logged-out file(s) removed; "
         f"{result.undecodable} undecodable, "
         f"{result.unstable} still changing (run the catch-up export after the flip to phase 3)")
    return EXIT_OK if not (result.undecodable or result.unstable) else EXIT_CHECK_FAILED


def _export_from_backup(args: argparse.Namespace) -> int:
    """Redis is gone: the files as the backup had them (no Redis contacted)."""
    from .backup import files_from_backup, loss_summary
    from .options import file_mode

    result = files_from_backup(args.from_backup, args.session_dir, state_dir=args.state_dir,
                               record=not args.no_record,
                               serializer=args.serializer, header_style=args.header_style,
                               protocol=args.pickle_protocol, mode=file_mode(args.mode, "--mode"))
    emit(args, result.as_dict(),
         f"wrote {result.written} file(s) from the {result.source}, kept {result.unchanged} changed since, "
         f"removed {result.removed} logged-out file(s), skipped {result.expired} expired; "
         + loss_summary(result.after_backup))
    return EXIT_OK if not result.undecodable else EXIT_CHECK_FAILED


def register_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="rollback: write Redis sessions back to cachelib files (records export.json)")
    add_session_options(parser)
    add_redis_options(parser)
    parser.add_argument("--header-style", choices=HEADER_STYLES,
                        help="struct for cachelib >= 0.7, pickle for older (default: the source profile)")
    parser.add_argument("--pickle-protocol", type=int, choices=range(0, 6), metavar="N",
                        help="pickle protocol of the files (default: the profile's; never newer than it)")
    parser.add_argument("--mode", default="0600",
                        help="octal file mode, keeping read and write for the owner (default 0600)")
    parser.add_argument("--uid", type=int, help="file owner (default: the session directory's)")
    parser.add_argument("--gid", type=int, help="file group (default: the session directory's)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"keys per pipeline (default {BATCH_SIZE})")
    parser.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes writing files (default: one per CPU, at most 4)")
    parser.add_argument("--no-record", action="store_true", help="do not write export.json")
    parser.add_argument("--from-backup", metavar="PATH",
                        help="Redis is gone: write the files from this session_backup file instead "
                             "(no Redis contacted; what Redis got after the backup is lost)")
    add_output_options(parser)
    parser.set_defaults(func=cmd_export)


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import create_backup

    resolve_profile(args, needs=("hash_name",))
    settings = redis_settings_from_args(args)
    client = connect_from_args(args)
    try:
        with progress_bar(args) as bar:
            result = create_backup(client, layout_from_args(args), args.dest, source=settings.endpoint,
                                   batch_size=args.batch_size, overwrite=args.force, progress=bar)
    finally:
        client.close()
    counts = result.manifest["counts"]
    emit(args, {"path": result.path, "created": result.created, "manifest": result.manifest},
         f"{'backed up' if result.created else 'kept the existing backup of'} {result.manifest['keys']} "
         f"key(s) ({counts['hashed']} sessions, {counts['tombstone']} tombstones, {counts['stock']} stock) "
         f"at {result.path}")
    return EXIT_OK


def register_backup(subparsers) -> None:
    parser = subparsers.add_parser("backup", help="every session key with its TTL into one gzip file (0600)")
    add_redis_options(parser)
    parser.add_argument("--dest", required=True, metavar="PATH", help="the backup file to write")
    parser.add_argument("--key-prefix", default=DEFAULT_PREFIX, help=f"default {DEFAULT_PREFIX!r}")
    parser.add_argument("--hash-method", choices=HASH_NAMES,
                        help="cachelib file name hash (default: the recorded source profile)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="PATH",
                        help=f"where the source profile is recorded (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--force", action="store_true", help="replace an existing backup at --dest")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"keys per pipeline (default {BATCH_SIZE})")
    add_output_options(parser)
    parser.set_defaults(func=cmd_backup)


def cmd_restore(args: argparse.Namespace) -> int:
    from .backup import restore_backup

    client = connect_from_args(args)
    try:
        with progress_bar(args) as bar:
            result = restore_backup(client, args.src, batch_size=args.batch_size, dry_run=args.dry_run,
                                    progress=bar)
    finally:
        client.close()
    emit(args, result.as_dict(),
         f"{'would restore' if args.dry_run else 'restored'} {result.restored_total} key(s); "
         f"{result.kept_existing} newer key(s) left alone, {result.kept_logged_out} logged out, "
         f"{result.expired} expired skipped")
    return EXIT_OK


def register_restore(subparsers) -> None:
    parser = subparsers.add_parser(
        "restore", help="put a backup back (checksum first; never overwrites a newer key)")
    add_redis_options(parser)
    parser.add_argument("--src", required=True, metavar="PATH", help="the backup file")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"keys per pipeline (default {BATCH_SIZE})")
    parser.add_argument("--dry-run", action="store_true", help="verify and count; write nothing")
    add_output_options(parser)
    parser.set_defaults(func=cmd_restore)


def cmd_cleanup(args: argparse.Namespace) -> int:
    import time

    from .cleanup import CleanupRefused, cleanup_sessions

    _check_dir(args.session_dir)
    cutoff = time.time() - args.max_age if args.max_age is not None else None
    try:
        result = cleanup_sessions(args.session_dir, scope=args.scope, cutoff=cutoff,
                                  include_corrupt=args.include_corrupt, dry_run=args.dry_run,
                                  state_dir=args.state_dir, prefix=args.key_prefix, force=args.force)
    except CleanupRefused as exc:
        raise CliError(str(exc)) from None
    listing = "".join(f"\n  {name}" for name in result.removed_files) if args.dry_run else ""
    emit(args, result.as_dict(),
         f"{'would remove' if args.dry_run else 'removed'} {result.removed} session file(s) "
         f"(scope {args.scope}); {result.kept} kept, {result.corrupt_kept} unreadable kept" + listing)
    return EXIT_OK if not result.errors else EXIT_CHECK_FAILED


def register_cleanup(subparsers) -> None:
    parser = subparsers.add_parser(
        "cleanup", help="remove expired / old / (phase 5 only) all file sessions")
    add_session_options(parser)
    parser.add_argument("--scope", default="expired", choices=("expired", "older", "all"),
                        help="expired (default), older (also files older than --max-age), all (phase 5 only)")
    parser.add_argument("--max-age", type=int, metavar="SECONDS", help="with --scope older")
    parser.add_argument("--include-corrupt", action="store_true", help="also remove unreadable session files")
    parser.add_argument("--force", action="store_true",
                        help="with --scope older in phase file or dual_write: remove live sessions too "
                             "(their users are logged out)")
    parser.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    add_output_options(parser)
    parser.set_defaults(func=cmd_cleanup)


# Every subcommand registers itself here, in the order `sessionshift --help` lists them.
SUBCOMMANDS = [
    register_analyze,
    register_migrate,
    register_validate,
    register_export,
    register_backup,
    register_restore,
    register_cleanup,
    register_phases,
]


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: ``--redis-password`` must not silently mean ``--redis-password-file``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="sessionshift",
        description="Move Flask server-side sessions from files to Redis in phases, losing none.")
    parser.add_argument("--version", action="version", version=f"sessionshift {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .formats import SessionFileError
    from .redisconn import RedisUnavailable

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_budget(args)
        return args.func(args)
    except (CliError, RedisUnavailable, SessionFileError, ValueError, OSError, RuntimeError) as exc:
        # One line an operator can act on; these errors name the endpoint or path.
        print(f"sessionshift {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"sessionshift {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        # The interpreter's exit ends with a garbage collection over every object alive,
        # most of them the imported modules' (redis-py's alone are tens of thousands): about
        # 55 ms here, a tenth of a small run. Frozen objects are left out of it; nothing that
        # needs a finaliser is among them (files and sockets are closed by the commands).
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
