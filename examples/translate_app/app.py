"""The translation app the seed load-tests, on sessionshift's phased session interface.

Everything it knows about a user lives in the server-side session: the user
name, the chosen language, the translation history and a write counter that
the load tests use to check that no write was lost (each user's counter must
be exactly the number of writes it made).

Configuration: a JSON object in the file named by ``TRANSLATE_APP_CONFIG``;
every key becomes ``app.config[key]`` (SECRET_KEY, SESSION_FILE_DIR,
SESSIONSHIFT_STATE_DIR, SESSIONSHIFT_REDIS, ...). See README.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template_string, request, session, url_for

from sessionshift.flask import PhasedSession

CONFIG_ENV = "TRANSLATE_APP_CONFIG"
HISTORY_LENGTH = 20

DEFAULTS: dict[str, Any] = {
    "SESSION_KEY_PREFIX": "session:",
    "SESSION_PERMANENT": True,
    "PERMANENT_SESSION_LIFETIME": 86400,
    "SESSION_SERIALIZATION_FORMAT": "msgpack",
    "SESSION_COOKIE_NAME": "session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}

PAGE = """<!doctype html>
<title>Translate</title>
{% if user %}
<p>Signed in as {{ user }} (language {{ language }}, {{ writes }} writes) -
<a href="{{ url_for('logout') }}">log out</a></p>
<form method="post" action="{{ url_for('translate') }}">
  <input name="input_text"> <input name="source_lang" value="en" size="3">
  &rarr; <input name="target_lang" value="{{ language }}" size="3"> <button>Translate</button>
</form>
<ol>{% for item in history %}<li>{{ item.input }} &rarr; {{ item.output }}</li>{% endfor %}</ol>
{% else %}
<form method="post" action="{{ url_for('login') }}">
  <input name="username" placeholder="user"> <input name="password" type="password"> <button>Log in</button>
</form>
{% endif %}
"""


def load_config(path: str | None) -> dict[str, Any]:
    """The app config: DEFAULTS, overridden by the JSON object in *path*."""
    config = dict(DEFAULTS)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise SystemExit(f"{CONFIG_ENV}={path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{CONFIG_ENV}={path}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise SystemExit(f"{CONFIG_ENV}={path}: expected a JSON object of Flask settings")
        config.update(values)
    return config


def fake_translate(text: str, source: str, target: str) -> str:
    """Deterministic, offline 'translation': the words in reverse order, tagged with the target."""
    return f"[{target}] " + " ".join(reversed(text.split()))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(load_config(os.environ.get(CONFIG_ENV)) if config is None else {**DEFAULTS, **config})
    if not app.config.get("SECRET_KEY"):
        raise SystemExit("SECRET_KEY is not set in the app config")
    PhasedSession(app)

    def wants_json() -> bool:
        return "application/json" in request.headers.get("Accept", "")

    def state() -> dict[str, Any]:
        return {
            "logged_in": "user" in session,
            "user": session.get("user"),
            "language": session.get("language"),
            "history": session.get("history", []),
            "writes": session.get("writes", 0),
            "last_write": session.get("last_write"),
        }

    def reply(status: int = 200):
        if wants_json():
            return jsonify(state()), status
        return redirect(url_for("index"))

    def record_write(what: str) -> None:
        session["writes"] = session.get("writes", 0) + 1
        session["last_write"] = what

    def need_login() -> Response | None:
        if "user" not in session:
            if wants_json():
                return jsonify({"logged_in": False, "error": "log in first"}), 401
            return redirect(url_for("index"))
        return None

    @app.get("/")
    def index():
        if wants_json():
            return jsonify(state())
        return render_template_string(PAGE, **state())

    @app.post("/login")
    def login():
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            if wants_json():
                return jsonify({"logged_in": False, "error": "username and password are required"}), 400
            return redirect(url_for("index"))
        app.session_interface.regenerate(session)  # a new sid at login: no session fixation
        session.clear()
        session.update(user=username, language=request.form.get("language", "en"), history=[], writes=0)
        record_write("login")
        return reply()

    @app.post("/translate")
    def translate():
        if (refused := need_login()) is not None:
            return refused
        text = request.form.get("input_text", "")
        source = request.form.get("source_lang", "en")
        target = request.form.get("target_lang", session.get("language", "en"))
        entry = {"input": text, "output": fake_translate(text, source, target),
                 "source": source, "target": target}
        session["history"] = [*session.get("history", []), entry][-HISTORY_LENGTH:]
        record_write(f"translate:{text}")
        return reply()

    @app.post("/set_language")
    def set_language():
        if (refused := need_login()) is not None:
            return refused
        session["language"] = request.form.get("language", "en")
        record_write(f"language:{session['language']}")
        return reply()

    @app.route("/logout", methods=["GET", "POST"])
    def logout():
        session.clear()
        return reply()

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "pid": os.getpid()})

    return app
