"""Sessions like real apps keep, written and read back by a real Flask-Session release.

Run with a release's own python (see flask_session_releases.py)::

    python flask_session_corpus.py write SESSION_DIR COUNT [msgpack-encodable]
    python flask_session_corpus.py read SESSION_DIR < sids

Each prints one JSON line per session: {"sid", "canonical"} (and "i" when written).

Both go through a Flask app that installs the release's ``Session(app)`` with
the filesystem backend, with Flask's test client: what the release writes and
reads is exactly what it would in production. The tests import this module too
(stdlib only at import time, Flask inside the functions) for
:func:`session_contents`, :func:`change` and :func:`canonical`, so the writer,
the phased interface and the comparison share one definition.

:func:`canonical` is a repr that names every type, so two sessions compare
equal only if they are equal type for type (a tuple that came back as a list,
or a naive datetime that came back aware, is a mismatch).
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import sys
import uuid

COOKIE = "session"
# The values msgpack cannot encode at all (an int beyond 64 bits; None and tuple dict keys): the
# "msgpack-encodable" corpus leaves them out, so that msgpack's type changes can be seen.
MSGPACK_UNENCODABLE = ("big", "counters")
LIFETIME = datetime.timedelta(days=7)
_CET = datetime.timezone(datetime.timedelta(hours=1), "CET")


def session_contents(i: int, msgpack_encodable: bool = False) -> dict:
    """The i-th user's session: Flask-Login's and Flask-WTF's keys plus the value types apps store."""
    contents = {
        # Flask-Login: the user id (a str), whether the login is fresh, the session identifier
        # (a sha512 of the client's address and user agent).
        "_user_id": str(1000 + i),
        "_fresh": i % 2 == 0,
        "_id": hashlib.sha512(f"127.0.0.1|agent {i}".encode()).hexdigest(),
        # Flask-WTF: the raw CSRF token (a sha1 hex string).
        "csrf_token": hashlib.sha1(f"csrf {i}".encode()).hexdigest(),
        "cart": (f"sku-{i}", 2, 19.99),
        "viewed": {f"item-{i}", "item-0"},
        "roles": frozenset({"user", f"group-{i % 3}"}),
        "order_id": uuid.UUID(int=0x1234_5678_9ABC_DEF0 + i),
        "logged_in_at": datetime.datetime(2026, 11, 30, 9, i % 60, 7, 250000),
        "expires_at": datetime.datetime(2026, 12, 1, 9, 30, i % 60, tzinfo=datetime.UTC),
        "local_time": datetime.datetime(2026, 12, 1, 10, 30, tzinfo=_CET),
        "birthday": datetime.date(1990, 1 + i % 12, 1 + i % 28),
        "idle": datetime.timedelta(minutes=i),
        "balance": decimal.Decimal("1234.50") + i,
        "avatar": bytes([i % 256, 0, 255]) + b"png",
        "counters": {1: "one", 2: (i, "two"), (3, "x"): {"deep": [1, 2.5, None, True, b"\x00"]},
                     None: "none key", 4.5: "float key"},
        "history": [{"q": f"text {i}", "n": i, "at": datetime.datetime(2026, 11, 29, 8, 0)}],
        "big": 2**70 + i,
        "name": f"ユーザー {i} ✓",
        "nothing": None,
    }
    for key in MSGPACK_UNENCODABLE if msgpack_encodable else ():
        del contents[key]
    return contents


def flash_messages(i: int) -> list[tuple[str, str]]:
    """(category, message) flashed while the i-th session was written."""
    return [("info", f"Welcome back, user {i}"), ("message", "Saved")]


def change(session, i: int, where: str) -> None:
    """Change the i-th session the way an app would on a request served in *where*.

    Works on Flask's session and on a plain dict alike (item assignment only, so
    a server-side session is marked modified).
    """
    session["cart"] = (*session["cart"], where)
    session["viewed"] = session["viewed"] | {where}
    session["roles"] = session["roles"] | frozenset({where})
    session[f"seen_{where}"] = datetime.datetime(2026, 12, 2, 12, i % 60, tzinfo=datetime.UTC)
    session["balance"] = session["balance"] + decimal.Decimal("0.01")
    session["counters"] = {**session["counters"], 5: (where, i)}
    session.pop("avatar", None)
    session["_fresh"] = False


def canonical(value) -> str:
    """A repr that names the type of every value, with sets and dicts in a stable order."""
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, dict):
        items = sorted(f"{canonical(k)}: {canonical(v)}" for k, v in value.items())
        return f"{name}{{{', '.join(items)}}}"
    if isinstance(value, (list, tuple)):
        return f"{name}[{', '.join(canonical(v) for v in value)}]"
    if isinstance(value, (set, frozenset)):
        return f"{name}{{{', '.join(sorted(canonical(v) for v in value))}}}"
    return f"{name}({value!r})"


# --------------------------------------------------------------------------- the app


def add_views(app) -> None:
    """The views the matrix drives, on *app* (stock Flask-Session or the phased interface)."""
    import flask

    @app.post("/write/<int:i>")
    def write(i):
        flask.session.update(session_contents(i, flask.request.args.get("msgpack_encodable") == "1"))
        for category, message in flash_messages(i):
            flask.flash(message, category)
        return canonical(dict(flask.session))

    @app.post("/change/<int:i>/<where>")
    def change_view(i, where):
        change(flask.session, i, where)
        return canonical(dict(flask.session))

    @app.get("/read")
    def read():
        return canonical(dict(flask.session))


def _stock_app(session_dir: str):
    import flask
    import flask_session

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="compat", SESSION_TYPE="filesystem", SESSION_FILE_DIR=session_dir,
                      SESSION_PERMANENT=True, PERMANENT_SESSION_LIFETIME=LIFETIME,
                      SESSION_COOKIE_NAME=COOKIE)
    flask_session.Session(app)
    add_views(app)
    return app


def cookie_value(response) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{COOKIE}="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise LookupError(f"no {COOKIE} cookie in the response ({response.status})")


def _write(session_dir: str, count: int, msgpack_encodable: bool) -> None:
    app = _stock_app(session_dir)
    for i in range(count):
        client = app.test_client(use_cookies=False)
        response = client.post(f"/write/{i}", query_string={"msgpack_encodable": int(msgpack_encodable)})
        assert response.status_code == 200, response.status
        sid = cookie_value(response)
        print(json.dumps({"i": i, "sid": sid, "canonical": response.get_data(as_text=True)}))


def _read(session_dir: str, sids: list[str]) -> None:
    app = _stock_app(session_dir)
    client = app.test_client(use_cookies=False)
    for sid in sids:
        response = client.get("/read", headers={"Cookie": f"{COOKIE}={sid}"})
        assert response.status_code == 200, response.status
        print(json.dumps({"sid": sid, "canonical": response.get_data(as_text=True)}))


def main(argv: list[str]) -> int:
    command, session_dir = argv[0], argv[1]
    if command == "write":
        _write(session_dir, int(argv[2]), argv[3:] == ["msgpack-encodable"])
    elif command == "read":
        _read(session_dir, [line.strip() for line in sys.stdin if line.strip()])
    else:
        raise SystemExit(f"unknown command {command!r}: write or read")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
