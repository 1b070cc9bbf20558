"""Parity with Flask-Session 0.8: the phased interface behaves like stock Flask-Session.

Every test runs against stock Flask-Session 0.8 (the filesystem backend, as
installed with sessionshift) and against ``PhasedSession`` in each of the five
phases (real redis-server with TLS and ACL from phase 2 on). The first tests
check, in our own words, what Flask-Session's own test suite checks (its
``conftest.py`` flow, ``test_basic.py``, ``test_filesystem.py``); the others the
cookie and header behaviours an app relies on. Where the two differ on purpose,
the test says why (docs/compatibility.md lists the differences).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import warnings
from datetime import UTC, datetime, timedelta

import flask
import flask_session
import pytest
from flask_session.base import ServerSideSession
from itsdangerous import Signer
from werkzeug.http import parse_date

from sessionshift import formats, phasefile
from sessionshift.flask import PhasedSession
from sessionshift.keys import KeyLayout
from sessionshift.phases import SPECS, Phase
from sessionshift.store import SessionStore

pytestmark = pytest.mark.integration

STOCK = "stock"
VARIANTS = (STOCK, *(phase.label for phase in Phase))
NO_VALUE = b"no value set"


def parse_set_cookie(header: str) -> dict:
    """A Set-Cookie header as {"name", "value", attribute (lower case): value or True}."""
    first, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    cookie = {"name": name, "value": value}
    for attribute in attributes:
        key, sep, attr_value = attribute.partition("=")
        cookie[key.lower()] = attr_value if sep else True
    return cookie


def set_cookie(response, name: str = "session") -> dict | None:
    cookies = [parse_set_cookie(h) for h in response.headers.getlist("Set-Cookie")]
    return next((cookie for cookie in cookies if cookie["name"] == name), None)


def add_routes(app: flask.Flask) -> None:
    """Flask-Session's own test app (conftest.py), plus the views the extra behaviours need."""

    @app.get("/")
    def hello():
        return "hello world"

    @app.post("/set")
    def set_value():
        flask.session["value"] = flask.request.form["value"]
        return "value set"

    @app.post("/modify")
    def modify():
        flask.session["value"] = flask.request.form["value"]
        return "value set"

    @app.post("/delete")
    def delete():
        del flask.session["value"]
        return "value deleted"

    @app.get("/get")
    def get():
        return flask.session.get("value", NO_VALUE.decode())

    @app.post("/nested")
    def nested():
        flask.session["nested"] = {"n": 1}
        return "set"

    @app.post("/nested/bump")
    def nested_bump():
        flask.session["nested"]["n"] += 1  # a change Flask cannot see
        if flask.request.args.get("mark"):
            flask.session.modified = True
        return "bumped"

    @app.get("/nested")
    def nested_get():
        return str(flask.session.get("nested", {}).get("n"))

    @app.post("/regenerate")
    def regenerate():
        flask.current_app.session_interface.regenerate(flask.session)
        return "regenerated"


@dataclasses.dataclass
class Backend:
    """Stock Flask-Session 0.8 (filesystem) or PhasedSession in one phase."""

    variant: str
    root: str
    redis_settings: dict | None = None
    redis_client: object = None

    @property
    def phase(self) -> Phase | None:
        return None if self.variant == STOCK else Phase.parse(self.variant)

    @property
    def session_dir(self) -> str:
        return os.path.join(self.root, "sessions")

    def app(self, static_folder: str | None = None, **config) -> flask.Flask:
        app = flask.Flask(__name__, static_folder=static_folder)
        # What Flask-Session's own test app sets for every test.
        app.config.update(SECRET_KEY="parity", TESTING=True, SESSION_FILE_DIR=self.session_dir,
                          SESSION_SERIALIZATION_FORMAT="json", SESSION_PERMANENT=False)
        app.config.update(config)
        add_routes(app)
        if self.variant == STOCK:
            app.config["SESSION_TYPE"] = "filesystem"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the filesystem backend's
                flask_session.Session(app)
            return app
        state_dir = os.path.join(self.root, "state")
        phasefile.set_phase(state_dir, self.variant, by="test", force=True)
        app.config.update(SESSIONSHIFT_STATE_DIR=state_dir, SESSIONSHIFT_PHASE_CHECK_INTERVAL=0,
                          SESSIONSHIFT_REDIS=self.redis_settings)
        PhasedSession(app)
        return app

    def stored(self, app: flask.Flask, sid: str) -> list[dict]:
        """The session under *sid* in every store this backend writes (absent ones left out)."""
        prefix = app.config.get("SESSION_KEY_PREFIX", "session:")
        if self.variant == STOCK:
            found = app.session_interface.cache.get(prefix + sid)
            return [] if found is None else [found]
        spec, config = SPECS[self.phase], app.session_interface.config
        layout = KeyLayout(prefix, config.hash_name)
        stored = []
        path = os.path.join(self.session_dir, layout.file_name(sid))
        if spec.writes_file and os.path.exists(path):
            stored.append(formats.read_session_file(path).data)
        if spec.writes_redis:
            raw = SessionStore(self.redis_client, layout).get(layout.file_name(sid))
            if raw is not None:
                stored.append(formats.decode_value(raw, config.serializer))
        return stored


@pytest.fixture(params=VARIANTS)
def backend(request, tmp_path) -> Backend:
    backend = Backend(request.param, str(tmp_path))
    if backend.phase is not None and backend.phase >= Phase.DUAL_WRITE:
        server = request.getfixturevalue("redis_server")
        backend.redis_client = request.getfixturevalue("redis_client")
        backend.redis_settings = dataclasses.asdict(server.settings(socket_timeout=2, retries=0))
    return backend


def sid_of(response) -> str:
    cookie = set_cookie(response)
    assert cookie is not None and cookie["value"], response.headers
    return cookie["value"]


# --------------------------------------------------------------------------- Flask-Session's suite


def test_set_modify_delete_and_vary_as_flask_sessions_own_suite_checks(backend):
    client = backend.app().test_client()
    assert client.get("/get").data == NO_VALUE
    assert "Vary" not in client.get("/").headers  # a view that never touches the session
    assert client.post("/set", data={"value": "42"}).data == b"value set"
    assert client.get("/get").data == b"42"
    assert client.get("/get").headers["Vary"] == "Cookie"
    assert client.post("/modify", data={"value": "43"}).data == b"value set"
    assert client.get("/get").data == b"43"
    assert client.post("/delete").data == b"value deleted"
    assert client.get("/get").data == NO_VALUE


def test_the_session_is_stored_under_the_cookies_sid(backend):
    app = backend.app()
    sid = sid_of(app.test_client().post("/set", data={"value": "44"}))
    stored = backend.stored(app, sid)
    assert stored and all(session["value"] == "44" for session in stored)


def test_flask_session_is_a_server_side_session(backend):
    app = backend.app()
    with app.test_request_context():
        assert isinstance(flask.session, ServerSideSession)


def test_an_unknown_serialization_format_stops_the_app_at_start(backend):
    with pytest.raises(ValueError, match="yaml"):
        backend.app(SESSION_SERIALIZATION_FORMAT="yaml")


@pytest.mark.parametrize("serialization_format", ["msgpack", "json"])
def test_both_flask_session_0_8_serialization_formats_start_and_serve(backend, serialization_format):
    client = backend.app(SESSION_SERIALIZATION_FORMAT=serialization_format).test_client()
    client.post("/set", data={"value": "kept"})
    assert client.get("/get").data == b"kept"


# --------------------------------------------------------------------------- cookies and headers


def test_signed_sid(backend):
    app = backend.app(SESSION_USE_SIGNER=True)
    value = sid_of(app.test_client().post("/set", data={"value": "signed"}))
    sid, _, signature = value.rpartition(".")
    assert sid and signature
    assert value == Signer("parity", salt="flask-session", key_derivation="hmac").sign(sid).decode()
    assert backend.stored(app, sid)
    for cookie, expected in ((value, b"signed"), (f"{sid}.forged", NO_VALUE), (sid, NO_VALUE)):
        client = app.test_client()
        client.set_cookie("session", cookie)
        assert client.get("/get").data == expected


@pytest.mark.parametrize("permanent", [True, False])
def test_permanent_sessions_get_an_expiring_cookie(backend, permanent):
    lifetime = timedelta(hours=3)
    app = backend.app(SESSION_PERMANENT=permanent, PERMANENT_SESSION_LIFETIME=lifetime)
    before = datetime.now(UTC).replace(microsecond=0)
    cookie = set_cookie(app.test_client().post("/set", data={"value": "p"}))
    if permanent:
        assert before + lifetime <= parse_date(cookie["expires"]) <= datetime.now(UTC) + lifetime
    else:
        assert "expires" not in cookie and "max-age" not in cookie


@pytest.mark.parametrize(("permanent", "refresh"), [(True, True), (True, False), (False, True)])
def test_refresh_each_request_sets_the_cookie_on_reads_of_permanent_sessions(backend, permanent, refresh):
    app = backend.app(SESSION_PERMANENT=permanent, SESSION_REFRESH_EACH_REQUEST=refresh)
    client = app.test_client()
    client.post("/set", data={"value": "r"})
    response = client.get("/get")
    assert response.data == b"r"
    assert (set_cookie(response) is not None) == (permanent and refresh)


def test_an_emptied_session_deletes_its_cookie_and_its_stored_copies(backend):
    app = backend.app()
    client = app.test_client()
    sid = sid_of(client.post("/set", data={"value": "bye"}))
    response = client.post("/delete")
    cookie = set_cookie(response)
    assert cookie["value"] == "" and parse_date(cookie["expires"]).year == 1970
    assert response.headers["Vary"] == "Cookie"
    assert backend.stored(app, sid) == []


COOKIE_SETTINGS = {"SESSION_COOKIE_NAME": "sid", "SESSION_COOKIE_DOMAIN": "example.test",
                   "SESSION_COOKIE_PATH": "/app", "SESSION_COOKIE_HTTPONLY": False,
                   "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "Strict"}


def comparable(cookie: dict) -> dict:
    """A cookie without what differs between two responses (the sid, the expiry instant)."""
    return {key: value for key, value in cookie.items() if key not in ("value", "expires")}


@pytest.mark.parametrize("settings", [{}, COOKIE_SETTINGS], ids=["defaults", "all-set"])
def test_session_cookie_settings_shape_the_cookie_as_stock_does(backend, tmp_path, settings):
    name = settings.get("SESSION_COOKIE_NAME", "session")
    def first_cookie(app: flask.Flask) -> dict:
        return set_cookie(app.test_client().post("/set", data={"value": "c"}), name)

    cookie = first_cookie(backend.app(**settings))
    stock = first_cookie(Backend(STOCK, str(tmp_path / "stock")).app(**settings))
    assert comparable(cookie) == comparable(stock)
    if settings:
        assert cookie["domain"] == "example.test" and cookie["path"] == "/app"
        assert "httponly" not in cookie and cookie["secure"] is True and cookie["samesite"] == "Strict"
    else:
        assert cookie["path"] == "/" and cookie["httponly"] is True and "secure" not in cookie


def test_the_cookie_name_setting_is_the_cookie_read(backend):
    client = backend.app(SESSION_COOKIE_NAME="sid").test_client()
    assert set_cookie(client.post("/set", data={"value": "named"}), "sid") is not None
    assert client.get("/get").data == b"named"


def test_partitioned_never_reaches_the_cookie_as_in_flask_session_0_8(backend):
    # Flask's own cookie session honours it; Flask-Session 0.8 does not pass it on.
    app = backend.app(SESSION_COOKIE_PARTITIONED=True, SESSION_COOKIE_SECURE=True)
    cookie = set_cookie(app.test_client().post("/set", data={"value": "x"}))
    assert cookie["secure"] is True and "partitioned" not in cookie


def test_no_vary_for_static_files_and_views_that_never_touch_the_session(backend, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body {}")
    app = backend.app(static_folder=str(static))
    client = app.test_client()
    for path in ("/static/site.css", "/"):
        response = client.get(path)
        assert response.status_code == 200
        assert "Vary" not in response.headers and set_cookie(response) is None
    client.post("/set", data={"value": "v"})  # a (non-permanent) session exists
    assert "Vary" not in client.get("/").headers
    assert client.get("/get").headers["Vary"] == "Cookie"


def test_a_change_inside_a_value_is_saved_only_when_marked_modified(backend):
    client = backend.app(SESSION_REFRESH_EACH_REQUEST=False).test_client()
    client.post("/nested")
    client.post("/nested/bump")
    assert client.get("/nested").data == b"1"
    client.post("/nested/bump?mark=1")
    assert client.get("/nested").data == b"2"  # the unmarked bump was lost, the marked one kept


@pytest.mark.parametrize("length", [None, 16, 48])
def test_session_id_length(backend, length):
    app = backend.app(**({} if length is None else {"SESSION_ID_LENGTH": length}))
    sid = sid_of(app.test_client().post("/set", data={"value": "l"}))
    assert len(sid) == len(secrets.token_urlsafe(32 if length is None else length))


def test_regenerate_moves_the_session_to_a_new_sid_and_forgets_the_old(backend):
    app = backend.app()
    client = app.test_client()
    old = sid_of(client.post("/set", data={"value": "7"}))
    new = sid_of(client.post("/regenerate"))
    assert new != old
    assert client.get("/get").data == b"7"
    assert backend.stored(app, old) == [] and backend.stored(app, new)
    replayed = app.test_client()
    replayed.set_cookie("session", old)
    assert replayed.get("/get").data == NO_VALUE


# --------------------------------------------------------------------------- said at start


@pytest.mark.parametrize(("setting", "said"), [
    ({"SESSION_FILE_THRESHOLD": 100}, "SESSION_FILE_THRESHOLD=100 is ignored"),
    ({}, "every session is kept until it expires"),
    ({"SESSION_COOKIE_PARTITIONED": True}, "SESSION_COOKIE_PARTITIONED is ignored"),
])
def test_settings_the_interface_does_not_follow_are_named_at_start(tmp_path, caplog, setting, said):
    with caplog.at_level(logging.INFO, logger="sessionshift.flask"):
        Backend("file", str(tmp_path)).app(**setting)
    assert said in caplog.text
