"""A Flask session interface that follows the host's migration phase.

One line in the app::

    from sessionshift.flask import PhasedSession
    PhasedSession(app)

It reads Flask-Session 0.8's settings plus the SESSIONSHIFT_* settings
(:mod:`.appconfig`), and serves each request from the stores its phase names
(``phases.SPECS``; the decisions live in :mod:`.phasecore`):

1 file         file only, in the source's own format (header style, pickle protocol)
2 dual_write   file, then Redis (a failed Redis write is journaled); read the file,
               with a sampled shadow read of Redis that only counts mismatches
3 redis_read   file, then Redis; read Redis, else the file (copied to Redis if absent)
4 redis_only   Redis (emergency file fallback if enabled, else 503); read Redis, else
               the legacy file (copied). A session written in phase 4 loses its legacy
               file, so it can never be served from that older copy again
5 redis        Redis only; optionally moves each session to stock Flask-Session's key

How files are named and written, and how sessions are held in Redis, come from
the source profile recorded in ``SESSIONSHIFT_STATE_DIR/profile.json``
(:mod:`.profile`): a SESSIONSHIFT_HASH_METHOD, _HEADER_STYLE,
_PICKLE_PROTOCOL or _SERIALIZER that contradicts it stops the app at start,
with both values. Files written in phases 1-4 are what the app's original
library reads; the Redis value is the exact pickle of the session.
SESSION_SERIALIZATION_FORMAT is the format of stock Flask-Session keys only
(phase 5's move option).

The phase comes from ``SESSIONSHIFT_STATE_DIR/phase.json`` (stat'ed at most
once a second), so a flip needs no restart. This module is the Flask side
only: cookies, signing, responses and request hooks.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

import flask
from flask.sessions import SessionInterface
from flask_session.base import ServerSideSession
from itsdangerous import BadSignature, Signer, want_bytes

from . import formats, metrics
from .appconfig import InterfaceConfig, load_settings_file, log_ignored_settings
from .journal import ReplayResult
from .journal import replay_host as replay_journal  # noqa: F401 (for tools: one import)
from .phasecore import SessionCore, SessionStoreUnavailable
from .phases import SPECS, Phase

log = logging.getLogger("sessionshift.flask")

PHASE_HEADER = "X-Session-Phase"
SOURCE_HEADER = "X-Session-Source"
_UNAVAILABLE_KEY = "sessionshift.unavailable"  # request.environ: why no store could serve the session


class PhasedSessionData(ServerSideSession):
    """Flask-Session's server-side session plus where this request found it."""

    def __init__(self, initial=None, sid=None, permanent=None, *, phase=Phase.FILE, source="none"):
        super().__init__(initial, sid=sid, permanent=permanent)
        self.phase = phase
        self.source = source
        self.unavailable: str | None = None


class PhasedSessionInterface(SessionInterface):
    session_class = PhasedSessionData

    def __init__(self, config: InterfaceConfig, redis_client=None):
        self.config = config
        self.core = SessionCore(config, redis_client)
        self.watcher, self.journal = self.core.watcher, self.core.journal

    @classmethod
    def from_app(cls, app: flask.Flask) -> PhasedSessionInterface:
        """The interface for *app*'s config, with its request hooks registered."""
        interface = cls(InterfaceConfig.from_app(app), redis_client=app.config.get("SESSION_REDIS"))
        log_ignored_settings(app.config)
        interface.register(app)
        return interface

    def register(self, app: flask.Flask) -> None:
        app.before_request(self._refuse_unavailable)
        if self.config.metrics_path:
            app.add_url_rule(self.config.metrics_path, "sessionshift_metrics", metrics_view)

    def replay_journal(self, limit: int | None = None, only: str | None = None) -> ReplayResult:
        return self.core.replay_journal(limit=limit, only=only)

    # ------------------------------------------------------------------ open
    def open_session(self, app: flask.Flask, request: flask.Request) -> PhasedSessionData:
        phase = self.watcher.current()
        metrics.PHASE.set(int(phase) if self.watcher.known else 0)
        sid = request.cookies.get(self.get_cookie_name(app))
        if not self.watcher.known:
            return self._unavailable(request, sid, phase,
                                     f"the phase file {self.watcher.path} is unreadable "
                                     f"({self.watcher.last_error}); set the phase again with the "
                                     "session_phase module")
        if sid and self.config.use_signer:
            try:
                sid = _signer(app).unsign(sid).decode()
            except BadSignature:
                sid = None
        if not sid:
            return self._new_session(phase)
        try:
            with metrics.LATENCY.labels("session", "open").time():
                data, source = self.core.load(phase, sid)
        except SessionStoreUnavailable as exc:
            metrics.UNAVAILABLE.labels(phase.label, "read").inc()
            return self._unavailable(request, sid, phase, str(exc))
        if data is None:
            return self._new_session(phase)
        metrics.READS.labels(phase.label, source).inc()
        return self.session_class(data, sid=sid, phase=phase, source=source)

    def _unavailable(self, request: flask.Request, sid: str | None, phase: Phase,
                     reason: str) -> PhasedSessionData:
        session = self.session_class(sid=sid, phase=phase, source="unavailable")
        session.unavailable = request.environ[_UNAVAILABLE_KEY] = reason
        return session

    def _new_session(self, phase: Phase) -> PhasedSessionData:
        metrics.READS.labels(phase.label, "none").inc()
        return self.session_class(sid=secrets.token_urlsafe(self.config.sid_length),
                                  permanent=self.config.permanent, phase=phase, source="none")

    # ------------------------------------------------------------------ save
    def save_session(self, app: flask.Flask, session: PhasedSessionData, response: flask.Response) -> None:
        response.headers[PHASE_HEADER] = session.phase.label if self.watcher.known else "unknown"
        response.headers[SOURCE_HEADER] = session.source
        try:
            if session.unavailable is None:
                self._save(app, session, response)
        except SessionStoreUnavailable as exc:
            metrics.UNAVAILABLE.labels(session.phase.label, "write").inc()
            _replace_response(response, 503, str(exc))
        except OSError as exc:
            log.error("session file write failed: %s", exc)
            _replace_response(response, 500, f"session could not be saved to "
                              f"{self.config.session_dir}: {exc.strerror or exc}")
        except formats.SessionValueError as exc:
            _replace_response(response, 500, f"session could not be encoded: {exc}")
        metrics.REQUESTS.labels(f"{response.status_code // 100}xx").inc()
        if SPECS[session.phase].writes_redis:  # journaled writes of this host wait for Redis
            response.call_on_close(self.core.maybe_replay)

    def _save(self, app: flask.Flask, session: PhasedSessionData, response: flask.Response) -> None:
        domain, path, name = self.get_cookie_domain(app), self.get_cookie_path(app), self.get_cookie_name(app)
        if session.accessed:
            response.vary.add("Cookie")
        if not session:
            if session.modified:
                self.core.delete(session.phase, session.sid)
                response.delete_cookie(name, domain=domain, path=path)
                response.vary.add("Cookie")
            return
        if not (session.modified or self.core.moves(session.phase, session.source)
                or app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return
        lifetime = int(_seconds(app.permanent_session_lifetime))
        expiry = int(time.time()) + lifetime if lifetime else 0
        self.core.save(session.phase, session.sid, dict(session), expiry, session.source)
        if not self.should_set_cookie(app, session):
            return
        value = _signer(app).sign(want_bytes(session.sid)).decode() if self.config.use_signer else session.sid
        response.set_cookie(name, value, expires=self.get_expiration_time(app, session),
                            httponly=self.get_cookie_httponly(app), domain=domain, path=path,
                            secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app))
        response.vary.add("Cookie")

    def regenerate(self, session: PhasedSessionData) -> None:
        """A new sid for *session* (Flask-Session 0.8's API; call it at login against fixation).

        The old sid's stored copies are deleted as a logout would delete them.
        """
        if session:
            self.core.delete(session.phase, session.sid)
            session.sid = secrets.token_urlsafe(self.config.sid_length)
            session.modified = True

    # ------------------------------------------------------------------ hooks
    def _refuse_unavailable(self):
        # The reason is read from the request, not from flask.session: touching
        # flask.session marks the session accessed, which would add Vary: Cookie
        # to every response, health checks and static files included.
        reason = flask.request.environ.get(_UNAVAILABLE_KEY)
        if reason and flask.request.endpoint not in self.config.sessionless_endpoints:
            return flask.Response(f"503 Service Unavailable: {reason}\n", status=503,
                                  mimetype="text/plain", headers={"Retry-After": "5"})
        return None


class PhasedSession:
    """``PhasedSession(app)``: install the phased interface (Flask-Session's ``Session(app)`` twin).

    ``settings_file`` names a JSON object of settings (SESSIONSHIFT_REDIS, SESSION_FILE_DIR, ...)
    merged into ``app.config`` first: the file the app_adopt role writes, so that an existing app
    needs this one line and no change to how it loads its own configuration.
    """

    def __init__(self, app: flask.Flask | None = None, settings_file: str | None = None):
        self.interface: PhasedSessionInterface | None = None
        self.settings_file = settings_file
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> PhasedSessionInterface:
        if self.settings_file:
            app.config.update(load_settings_file(self.settings_file))
        self.interface = PhasedSessionInterface.from_app(app)
        app.session_interface = self.interface
        return self.interface


def metrics_view() -> flask.Response:
    interface = flask.current_app.session_interface
    if isinstance(interface, PhasedSessionInterface):
        metrics.JOURNAL_DEPTH.set(interface.journal.depth())  # measured now, not at the last replay
    body, content_type = metrics.render()
    return flask.Response(body, content_type=content_type)


def _signer(app: flask.Flask) -> Signer:
    if not app.secret_key:
        raise KeyError("SECRET_KEY must be set when SESSION_USE_SIGNER=True")
    return Signer(app.secret_key, salt="flask-session", key_derivation="hmac")


def _seconds(value: timedelta | int) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _replace_response(response: flask.Response, status: int, message: str) -> None:
    """Turn a response into a clear error after the view ran (the session could not be saved)."""
    response.status_code = status
    response.direct_passthrough = False
    response.set_data(f"{status} {response.status.split(' ', 1)[-1]}: {message}\n")
    response.mimetype = "text/plain"
    if status == 503:
        response.headers["Retry-After"] = "5"
