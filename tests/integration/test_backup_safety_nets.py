"""The rollout's backup step (before phase 4, before an emergency rollback) through the real role tasks.

roles/rollout tasks_from backup against a real TLS redis-server and a real moto server: the
key-level backup on the "app host", its copy fetched to the controller, and the ElastiCache
snapshot, which moto refuses for the call community.aws.elasticache_snapshot makes (it names
both the group and a member cluster): the run goes on with a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from devstack.local_stack import ROOT
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer

pytestmark = pytest.mark.integration


def test_the_backup_is_copied_to_the_controller_and_a_failed_snapshot_is_a_warning(
        redis_server, redis_client, tmp_path):
    redis_client.set("session:h:{" + "a" * 64 + "}", b"x", ex=600)
    with MotoServer.start() as moto:
        elasticache = boto3.client("elasticache", **moto.client_kwargs())
        elasticache.create_replication_group(
            ReplicationGroupId="sessions", ReplicationGroupDescription="sessions", Engine="valkey",
            CacheNodeType="cache.t4g.small", NumNodeGroups=1, ReplicasPerNodeGroup=1)
        playbook = tmp_path / "backup.yml"
        task = {"name": "Back up",
                "ansible.builtin.include_role": {"name": "rollout", "tasks_from": "backup"}}
        playbook.write_text(json.dumps([{"hosts": "app", "gather_facts": False, "tasks": [task]}]))
        settings = redis_server.settings()
        variables = {
            "rollout_redis": {"url": settings.url, "username": settings.username,
                              "password": settings.password, "ca_file": settings.ca_file},
            "rollout_state_dir": str(tmp_path / "host-state"), "sessionshift_redis": {},
            "rollout_backup_controller_dir": str(tmp_path / "controller"),
            "_rollout_backup_label": "before-phase4-20261130T040000",
            "rollout_elasticache_snapshot_enabled": True,
            "rollout_elasticache_replication_group_id": "sessions",
            "rollout_aws_endpoint_url": moto.endpoint_url, "rollout_aws_access_key": "testing",
            "rollout_aws_secret_key": "testing"}
        run = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "app,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}", str(playbook),
             "-e", json.dumps(variables)],
            cwd=ROOT, env=dict(os.environ, **FAKE_CREDENTIALS, ANSIBLE_NOCOLOR="1",
                               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")),
            capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    backup = tmp_path / "host-state" / "backups" / "sessions-before-phase4-20261130T040000.backup"
    copy = tmp_path / "controller" / backup.name
    assert backup.exists() and copy.read_bytes() == backup.read_bytes()
    assert "no ElastiCache snapshot of sessions was taken" in run.stdout
    assert "InvalidParameterCombination" in run.stdout or "Only one of" in run.stdout, run.stdout[-3000:]
