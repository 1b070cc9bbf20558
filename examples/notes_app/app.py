"""A second Flask app, not the demo: notes behind Flask-Login, with flash messages.

It stands for an existing application adopted by the app_adopt role. Before adoption it
kept Flask-Session's filesystem sessions (``Session(app)`` with ``SESSION_TYPE=filesystem``);
adopting it replaced that one line with ``PhasedSession(app, settings_file=...)``: the role
writes the settings file (session directory, state directory, Redis URL, CA, token).

What lives in its sessions is what Flask-Login and ``flash`` put there (``_user_id``,
``_fresh``, ``_id``, ``_flashes`` as a list of tuples) plus the user's notes, so a phase
move that changed a type or lost a write shows at once.

Configuration: environment variables ``NOTES_APP_SECRET_KEY`` and
``NOTES_APP_SESSIONSHIFT_SETTINGS`` (the settings file's path).
"""

from __future__ import annotations

import os

from flask import Flask, flash, get_flashed_messages, jsonify, request, session
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user

from sessionshift.flask import PhasedSession


class User(UserMixin):
    def __init__(self, user_id: str):
        self.id = user_id


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=os.environ.get("NOTES_APP_SECRET_KEY", "notes-app-test-only-not-a-secret"),
                      SESSION_PERMANENT=True, PERMANENT_SESSION_LIFETIME=86400)
    app.config.update(config or {})
    PhasedSession(app, settings_file=os.environ.get("NOTES_APP_SESSIONSHIFT_SETTINGS"))

    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User:
        return User(user_id)

    @login_manager.unauthorized_handler
    def unauthorized():
        return jsonify(error="not logged in"), 401

    @app.post("/login")
    def login():
        login_user(User(request.form["username"]), remember=False)
        session["notes"] = []
        flash(f"welcome {current_user.id}", "info")
        return jsonify(user=current_user.id)

    @app.post("/notes")
    @login_required
    def add_note():
        session["notes"] = [*session.get("notes", []), request.form["text"]]
        flash("note saved", "success")
        return jsonify(notes=session["notes"], count=len(session["notes"]))

    @app.get("/notes")
    @login_required
    def notes():
        return jsonify(user=current_user.id, notes=session.get("notes", []),
                       flashes=[list(item) for item in get_flashed_messages(with_categories=True)])

    @app.post("/logout")
    @login_required
    def logout():
        logout_user()
        session.clear()
        return jsonify(ok=True)

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app
