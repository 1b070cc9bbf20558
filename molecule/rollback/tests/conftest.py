"""Shared by the testinfra tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def hostvars(host):
    """hostvars(name, ...): variables of the host, templated by Ansible as the plays saw them."""

    def lookup(*names):
        expression = ", ".join(f"'{name}': {name}" for name in names)
        return host.ansible("ansible.builtin.debug", "msg={{ {" + expression + "} }}", check=False)["msg"]

    return lookup
