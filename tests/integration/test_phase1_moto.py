"""playbooks/phase1.yml against a fresh moto account: --check changes nothing, and each tag runs alone.

The runbook runs phase 1 tag by tag on different days (``--tags elasticache``, then
``--tags cloudwatch_alarms``), each in its own ansible-playbook process with no fact
cache, and says every playbook may be run with ``--check`` first. The network
(VPC, subnets, the app hosts' security group) is the account's own, made first by
playbooks/local_aws.yml as the local inventories do.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from unittest import mock

import boto3
import pytest

from devstack.local_stack import ROOT, LocalStack, PlaybookRun
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer

pytestmark = pytest.mark.integration

GROUP = "sessionshift-moto"  # inventories/aws-moto


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """A moto server of its own (a fresh account) with only the network in it."""
    # Its request recorder (off until a test starts it) writes here, not in the working directory.
    recording = str(tmp_path_factory.mktemp("moto") / "recording.jsonl")
    with mock.patch.dict(os.environ, MOTO_RECORDER_FILEPATH=recording), MotoServer.start() as moto:
        assert playbook(moto, "local_aws.yml").returncode == 0
        yield moto


def playbook(moto: MotoServer, name: str, *args: str) -> PlaybookRun:
    env = dict(os.environ, **FAKE_CREDENTIALS, SESSIONSHIFT_MOTO_ENDPOINT=moto.endpoint_url,
               SESSIONSHIFT_ROLLOUT_LOCK=f"/tmp/sessionshift-rollout-moto-{moto.port}.lock",  # not shared
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "-i", os.path.join(ROOT, "inventories", "aws-moto"),
                           os.path.join(ROOT, "playbooks", name), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)


def resources(moto: MotoServer) -> dict[str, list]:
    """Everything phase 1 provisions, by kind."""
    kw = moto.client_kwargs()
    return {
        "kms_keys": boto3.client("kms", **kw).list_keys()["Keys"],
        "secrets": boto3.client("secretsmanager", **kw).list_secrets()["SecretList"],
        "groups": boto3.client("elasticache", **kw).describe_replication_groups()["ReplicationGroups"],
        "alarms": boto3.client("cloudwatch", **kw).describe_alarms()["MetricAlarms"],
        "topics": boto3.client("sns", **kw).list_topics()["Topics"],
        "policies": boto3.client("iam", **kw).list_policies(Scope="Local")["Policies"],
        "roles": boto3.client("iam", **kw).list_roles()["Roles"],
        "instance_profiles": boto3.client("iam", **kw).list_instance_profiles()["InstanceProfiles"],
        "log_groups": boto3.client("logs", **kw).describe_log_groups()["logGroups"],
        "security_groups": sorted(group["GroupName"] for group in boto3.client("ec2", **kw)
                                  .describe_security_groups()["SecurityGroups"]),
    }


def test_check_on_a_fresh_account_and_brand_new_app_hosts_passes_and_changes_nothing(
        account, tmp_path, monkeypatch):
    """The operator's first command: phase1.yml --check, before anything exists anywhere.

    The local inventory has every group phase 1 plays on (aws_control, the Redis stand-in, an app
    host). The app host is brand new: no virtualenv (the role would create one), no session or
    state directory, no phase file; the Redis stand-in has no TLS files, configuration or process.
    """
    monkeypatch.setenv("SESSIONSHIFT_MOTO_ENDPOINT", account.endpoint_url)
    stack = LocalStack.create(str(tmp_path / "stack"), hosts=1, seed_sessions=50, extra_vars={
        "session_app_venv_create": True, "session_app_venv": str(tmp_path / "venv")})
    before = resources(account)
    run = stack.playbook("phase1.yml", "--check")
    assert run.returncode == 0, run.output[-4000:]
    recap = run.recap
    # It reports what a real run would do on every kind of host...
    assert recap["localhost"]["changed"] > 0 and recap["local-redis"]["changed"] > 0, recap
    assert recap["app1"]["changed"] > 0, recap
    assert "a run starts this host in phase 1 (file)" in run.output
    # ...and does none of it: nothing on the hosts, nothing in the account.
    assert not os.path.exists(stack.local_dir) and not os.path.exists(tmp_path / "venv")
    assert resources(account) == before
    assert not before["groups"] and not before["kms_keys"]


def test_cloudwatch_alarms_tag_runs_alone_after_the_elasticache_tag(account):
    run = playbook(account, "phase1.yml", "--tags", "elasticache")
    assert run.returncode == 0, run.output[-4000:]
    members = resources(account)["groups"][0]["MemberClusters"]
    assert members and not resources(account)["alarms"]
    # The app hosts read the AUTH token through their instance profile's role (the inventory names it).
    iam = boto3.client("iam", **account.client_kwargs())
    attached = iam.list_attached_role_policies(RoleName="sessionshift-app-hosts")["AttachedPolicies"]
    assert [policy["PolicyName"] for policy in attached] == [f"{GROUP}-read-redis-auth-token"]
    profile = iam.get_instance_profile(InstanceProfileName="sessionshift-app-hosts")["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == ["sessionshift-app-hosts"]

    run = playbook(account, "phase1.yml", "--tags", "cloudwatch_alarms")  # a new process: no facts
    assert run.returncode == 0, run.output[-4000:]
    watched = {dimension["Value"] for alarm in resources(account)["alarms"]
               for dimension in alarm["Dimensions"] if dimension["Name"] == "CacheClusterId"}
    assert watched == set(members)


def recorded_requests(moto: MotoServer, start: bool = False) -> list[dict[str, str]]:
    """The form bodies of the query-API requests moto received since its recorder started."""
    if start:
        for action in ("reset-recording", "start-recording"):
            urllib.request.urlopen(urllib.request.Request(f"{moto.endpoint_url}/moto-api/recorder/{action}",
                                                          method="POST")).read()
        return []
    with urllib.request.urlopen(f"{moto.endpoint_url}/moto-api/recorder/download-recording") as answer:
        lines = answer.read().decode().splitlines()
    requests = []
    for line in lines:
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        form = dict(urllib.parse.parse_qsl(body)) if body.startswith("Action=") else {}
        requests.append(form or {"Action": entry["headers"].get("X-Amz-Target", "")})
    return requests


def token(moto: MotoServer) -> str:
    """The AUTH token in the group's Secrets Manager secret."""
    secrets = boto3.client("secretsmanager", **moto.client_kwargs())
    return secrets.get_secret_value(SecretId=f"{GROUP}/redis-auth-token")["SecretString"]


def token_before_rotating(moto: MotoServer) -> str:
    """The group provisioned (phase 1, days 1-2) and moto recording requests: the token in use."""
    if not resources(moto)["groups"]:
        assert playbook(moto, "phase1.yml", "--tags", "elasticache").returncode == 0
    recorded_requests(moto, start=True)
    return token(moto)


def test_rotate_auth_token_sends_rotate_then_set_with_the_new_secret(account):
    """playbooks/rotate_auth_token.yml's ElastiCache branch against the moto server.

    moto accepts both modify_replication_group calls but models neither strategy (a group keeps
    the token it was created with), so what is checked is what AWS would be sent: the new token
    stored first, then ROTATE to it, then SET to it; tests/unit/test_elasticache_module.py pins
    the same requests through botocore's Stubber.
    """
    old = token_before_rotating(account)
    run = playbook(account, "rotate_auth_token.yml")
    assert run.returncode == 0, run.output[-4000:]
    new = token(account)
    assert new != old and len(new) == 64
    assert new not in run.output and old not in run.output

    requests = recorded_requests(account)
    modifies = [request for request in requests if request.get("Action") == "ModifyReplicationGroup"]
    assert [(m["ReplicationGroupId"], m.get("AuthTokenUpdateStrategy"), m.get("AuthToken") == new)
            for m in modifies] == [(GROUP, "ROTATE", True), (GROUP, "SET", True)]
    stored = [index for index, request in enumerate(requests)
              if request["Action"] == "secretsmanager.UpdateSecret"]
    assert stored and stored[-1] < requests.index(modifies[0])  # the secret holds the token before ROTATE
    group = resources(account)["groups"][0]
    assert group["AuthTokenEnabled"] and group["Status"] == "available"


def test_a_failed_rotate_puts_the_old_token_back_in_the_secret(account):
    """Step 1 stores the new token before ROTATE: if ROTATE fails, the secret must not keep a token
    the group does not accept (an app host restarting then could not connect)."""
    before = token_before_rotating(account)
    # The role's preflight refuses a token length AWS does not allow, inside the ROTATE step.
    run = playbook(account, "rotate_auth_token.yml", "-e", "elasticache_auth_token_length=8")
    assert run.returncode != 0
    assert "holds the old token again" in run.output, run.output[-3000:]
    assert token(account) == before
    actions = [request["Action"] for request in recorded_requests(account)]
    assert actions.count("secretsmanager.UpdateSecret") == 2  # the new token, then the old one back
    assert "ModifyReplicationGroup" not in actions
