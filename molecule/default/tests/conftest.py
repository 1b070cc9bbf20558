"""Shared by the testinfra tests of every local scenario (molecule/rollback links to this file)."""

from __future__ import annotations

import pytest
import requests


@pytest.fixture
def hostvars(host):
    """hostvars(name, ...): variables of the host, templated by Ansible as the plays saw them."""

    def lookup(*names):
        expression = ", ".join(f"'{name}': {name}" for name in names)
        return host.ansible("ansible.builtin.debug", "msg={{ {" + expression + "} }}", check=False)["msg"]

    return lookup


@pytest.fixture
def app(hostvars):
    return hostvars("session_app_port", "session_app_base_dir", "session_app_session_dir",
                    "session_app_state_dir")


@pytest.fixture
def seeded_sessions_not_served(host, app):
    """seeded_sessions_not_served(source) -> the seeded sids (first 8 characters) that are not
    logged in, or not served from *source* (file, redis, ...).

    The scenarios' hosts are this machine (ansible_connection: local), so the app is asked directly.
    """

    def check(source: str) -> list[str]:
        sids = host.file(app["session_app_base_dir"] + "/seeded-sids.txt").content_string.split()
        assert len(sids) == 300, "the scenario seeds 300 sessions per host"
        http, missing = requests.Session(), []
        for sid in sids:
            http.cookies.clear()
            http.cookies.set("session", sid)
            reply = http.get(f"http://127.0.0.1:{app['session_app_port']}/",
                             headers={"Accept": "application/json"}, timeout=10)
            if not (reply.ok and reply.json()["logged_in"] and reply.headers["X-Session-Source"] == source):
                missing.append(sid[:8])
        return missing

    return check
