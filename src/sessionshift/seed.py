"""Realistic cachelib session files for the demo and the benchmarks.

Each session is what the translation demo app would have stored after a user
logged in and used it for a while: the user, the language, a translation
history, a CSRF token and timestamps, 0.5-2 KB once pickled, written in
cachelib's own format (``sessionshift.formats.write_session_file``) under
``hash(prefix + sid)``. The sid is returned (and can be saved to a file)
because it is the cookie value: with it a load generator or the demo logs those
users back in and proves their sessions survived the migration.

With an ``rng_seed`` the same call writes the same sids (so the same files)
and, for the same ``now``, the same data: seeding twice does not add sessions.

    python -m sessionshift.seed --seed-sessions 1000 --dir /var/lib/app/sessions \
        --sids-file /var/lib/app/seeded-sids.txt --rng-seed app1
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pwd
import random
import secrets
import sys
import time

from .formats import (
    DEFAULT_PREFIX,
    HASH_NAMES,
    HashName,
    encode_cachelib,
    session_file_name,
    write_session_file,
)

MIN_SESSION_BYTES = 512
MAX_SESSION_BYTES = 2048
SID_BYTES = 32  # Flask-Session's default SESSION_ID_LENGTH (secrets.token_urlsafe(32))

_LANGUAGES = ("en", "ja", "fr", "de", "es", "it", "pt", "ko", "zh", "nl")
_FIRST_NAMES = ("aiko", "ben", "chloe", "daichi", "emma", "felix", "hana", "ivan", "julia", "kenji",
                "lena", "marco", "nora", "oscar", "priya", "ren", "sofia", "takumi", "uma", "yuki")
_WORDS = ("hello", "thank you", "where is the station", "good morning", "how much is this",
          "the meeting is at three", "please send the invoice", "i would like a coffee",
          "see you tomorrow", "the train is late", "can you help me", "welcome to our shop",
          "the report is ready", "turn left at the corner", "is breakfast included")


def _sid(rng: random.Random | None) -> str:
    """A session id shaped like Flask-Session's (43 url-safe characters)."""
    if rng is None:
        return secrets.token_urlsafe(SID_BYTES)
    raw = rng.getrandbits(SID_BYTES * 8).to_bytes(SID_BYTES, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_session(rng: random.Random, now: float, age: float) -> dict:
    """One logged-in user's session as the translation demo app keeps it (0.5-2 KB pickled).

    The app's keys (``user``, ``language``, ``history`` of {input, output,
    source, target}, the ``writes`` counter and ``last_write``) plus what a real
    app also carries: a CSRF token, login time, last activity, preferences.
    """
    user = f"{rng.choice(_FIRST_NAMES)}{rng.randrange(1, 10_000)}"
    source, target = rng.sample(_LANGUAGES, 2)
    session: dict = {
        "_permanent": True,
        "user": user,
        "user_id": rng.randrange(1, 10_000_000),
        "language": target,
        "history": [],
        "writes": 1,
        "last_write": "login",
        "csrf_token": f"{rng.getrandbits(160):040x}",
        "logged_in_at": round(now - age, 3),
        "last_seen": round(now - rng.uniform(0, min(age, 600.0)), 3),
        "preferences": {"theme": rng.choice(("light", "dark")), "autodetect": rng.random() < 0.5},
    }
    # Grow the history until the session lands in the size range; real users
    # have anything from a couple to a few dozen translations.
    target_size = rng.randint(MIN_SESSION_BYTES + 64, MAX_SESSION_BYTES - 128)
    while len(encode_cachelib(session, 0)) < target_size:
        text = rng.choice(_WORDS)
        session["history"].append({"input": text, "output": f"[{target}] " + " ".join(reversed(text.split())),
                                   "source": source, "target": target})
        session["writes"] += 1
        session["last_write"] = f"translate:{text}"
    if len(encode_cachelib(session, 0)) > MAX_SESSION_BYTES and len(session["history"]) > 1:
        session["history"].pop()
    return session


def seed_sessions(directory: str, count: int, prefix: str = DEFAULT_PREFIX,
                  hash_name: HashName = "sha256", lifetime: int = 86400,
                  rng_seed: int | str | None = None, *, uid: int | None = None,
                  gid: int | None = None, now: float | None = None) -> list[str]:
    """Write *count* session files to *directory*; return their sids (the cookie values).

    Each session started some time within the first half of *lifetime* ago and
    expires ``lifetime`` seconds after it started (0 = never), as Flask-Session
    would have written it. Deterministic for a given ``rng_seed`` (and ``now``).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    if hash_name not in HASH_NAMES:
        raise ValueError(f"hash_name must be one of {', '.join(HASH_NAMES)}, not {hash_name!r}")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"session directory {directory} does not exist: create it first "
                                "(the session_app role does)")
    # Demo data, not secrets: a seeded PRNG makes runs reproducible. Without a
    # seed the sids come from `secrets`, like the app's own.
    rng = random.Random(rng_seed)  # noqa: S311
    sid_rng = rng if rng_seed is not None else None
    now = time.time() if now is None else now
    horizon = lifetime / 2 if lifetime else 3600.0
    sids = []
    for _ in range(count):
        sid = _sid(sid_rng)
        age = rng.uniform(1.0, horizon)
        data = make_session(rng, now, age)
        expiry = int(now - age + lifetime) if lifetime else 0
        write_session_file(directory, session_file_name(sid, prefix, hash_name), data, expiry,
                           uid=uid, gid=gid, mtime=now - rng.uniform(0, min(age, 600.0)))
        sids.append(sid)
    return sids


def write_sids_file(path: str, sids: list[str]) -> None:
    """One sid per line, readable only by the owner (sids are live credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.writelines(f"{sid}\n" for sid in sids)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sessionshift.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-sessions", type=int, required=True, metavar="N",
                        help="how many sessions to write")
    parser.add_argument("--dir", required=True, help="the app's SESSION_FILE_DIR")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="SESSION_KEY_PREFIX (default %(default)s)")
    parser.add_argument("--hash", dest="hash_name", choices=HASH_NAMES, default="sha256",
                        help="cachelib's file name hash: sha256 (0.16+) or md5 (older)")
    parser.add_argument("--lifetime", type=int, default=86400,
                        help="PERMANENT_SESSION_LIFETIME in seconds (0 = never expires)")
    parser.add_argument("--rng-seed", default=None,
                        help="makes the sids and data reproducible (same seed, same sessions)")
    parser.add_argument("--owner", default=None, help="user that owns the files (the app's user)")
    parser.add_argument("--sids-file", default=None, help="write the sids here, one per line (mode 0600)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    uid = gid = None
    if args.owner:
        try:
            entry = pwd.getpwnam(args.owner)
        except KeyError:
            print(f"seed: no such user {args.owner!r}", file=sys.stderr)
            return 2
        uid, gid = entry.pw_uid, entry.pw_gid
    try:
        sids = seed_sessions(args.dir, args.seed_sessions, args.prefix, args.hash_name, args.lifetime,
                             args.rng_seed, uid=uid, gid=gid)
    except (ValueError, OSError) as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    if args.sids_file:
        write_sids_file(args.sids_file, sids)
    digest = hashlib.sha256("".join(sids).encode()).hexdigest()[:16]
    print(json.dumps({"seeded": len(sids), "directory": args.dir, "sids_file": args.sids_file,
                      "sids_digest": digest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
