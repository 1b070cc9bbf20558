"""The local stand-in roles document every variable they take, under their own prefix."""

from __future__ import annotations

import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Required without a default: the inventory must set them (a vault outside the demo).
REQUIRED_WITHOUT_DEFAULT = {"local_redis": {"local_redis_password"},
                            "session_app": {"session_app_secret_key"}}


def load(role: str, *parts: str):
    with open(os.path.join(ROOT, "roles", role, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("role", ["local_redis", "session_app"])
def test_argument_specs_cover_exactly_the_defaults(role):
    defaults = set(load(role, "defaults", "main.yml"))
    options = set(load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"])

    assert options - defaults == REQUIRED_WITHOUT_DEFAULT[role]
    assert defaults - options == set()


@pytest.mark.parametrize("role", ["local_redis", "session_app"])
def test_variables_carry_the_role_prefix(role):
    assert all(name.startswith(f"{role}_") for name in load(role, "defaults", "main.yml"))
    assert all(name.startswith(f"_{role}_") for name in load(role, "vars", "main.yml"))


def test_only_non_evicting_policies_are_allowed():
    spec = load("local_redis", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(spec["local_redis_maxmemory_policy"]["choices"]) == {"noeviction", "volatile-ttl"}
    assert load("local_redis", "defaults", "main.yml")["local_redis_maxmemory_policy"] == "noeviction"


def test_local_inventory_has_two_app_hosts_on_distinct_ports():
    with open(os.path.join(ROOT, "inventories", "local", "hosts.yml"), encoding="utf-8") as handle:
        hosts = yaml.safe_load(handle)["all"]["children"]
    apps = hosts["app_servers"]["hosts"]
    ports = [vars_["session_app_port"] for vars_ in apps.values()]

    assert len(apps) >= 2 and len(set(ports)) == len(ports)
    assert all(not 20000 <= port <= 45000 for port in ports), "the test fixtures use 20000-45000"
    assert set(hosts) >= {"app_servers", "redis", "aws_control"}
