"""docs/runbook.md, run as written: every sh block, in order, against one local stack and a moto server.

The stack is inventories/local moved to free ports and a temporary directory
(devstack/local_stack.py); its test settings (short watch windows, the maintenance
window and the phase-5 cutoff overridden, as a test cannot wait weeks) are inventory
variables, so that the commands need no extra argument. The moto server stands in for
the AWS account; its network (the account's own VPC, subnets and app security group) is
made first, as production's exists before the runbook starts. Blocks that need real hosts
or real AWS say in the document what runs instead (tests/support/runbook.py).
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import yaml

from devstack.local_stack import ROOT, LocalStack, Traffic
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer
from tests.load.live_flip import make_stack_dir
from tests.support.runbook import run_step, steps

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")
STEPS = steps(RUNBOOK)


class Operator:
    """One terminal on the controller: the environment the runbook's steps share."""

    def __init__(self, stack: LocalStack, moto: MotoServer, directory: str, traffic: Traffic):
        self.stack, self.traffic = stack, traffic
        self.env = dict(os.environ, **FAKE_CREDENTIALS,
                        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
                        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0",
                        SESSIONSHIFT_LOCAL_DIR=stack.local_dir, SESSIONSHIFT_MOTO_ENDPOINT=moto.endpoint_url,
                        SESSIONSHIFT_ROLLOUT_LOCK=stack.lock_file,  # this stack's, not the machine-wide one
                        AWS_ENDPOINT_URL=moto.endpoint_url,
                        RUNBOOK_INVENTORY=stack.inventory, RUNBOOK_DIR=directory,
                        RUNBOOK_SESSION_DIR=stack.session_dir("app1"),
                        RUNBOOK_STATE_DIR=stack.state_dir("app1"))
        self.failed: str | None = None


@pytest.fixture(scope="module")
def operator():
    directory = make_stack_dir()  # readable by the redis user
    stack = LocalStack.create(directory, hosts=2, seed_sessions=100, watch_seconds=2,
                              extra_vars={"rollout_cloudwatch_enabled": True})
    hosts_file = os.path.join(stack.inventory, "hosts.yml")
    with open(hosts_file) as handle:
        document = yaml.safe_load(handle)
    document["all"].setdefault("vars", {}).update(stack.extra_vars)  # no -e needed by the commands
    with open(hosts_file, "w") as handle:
        yaml.safe_dump(document, handle)
    with MotoServer.start() as moto:
        network = stack.playbook("local_aws.yml", extra={"aws_moto_endpoint_url": moto.endpoint_url})
        assert network.returncode == 0, network.output[-3000:]
        try:
            with Traffic([stack.app_url(host) for host in sorted(stack.app_ports)]) as traffic:  # the users
                yield Operator(stack, moto, directory, traffic)
        finally:
            stack.stop()
            shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("step", STEPS, ids=[step.name for step in STEPS])
def test_runbook_step(operator, step):
    if operator.failed:
        pytest.fail(f"not run: the earlier step {operator.failed} failed")
    assert operator.traffic.thread.is_alive(), operator.traffic.summary()  # the phase-4 gate needs users
    done = run_step(step, operator.env, ROOT, timeout=1100)
    if done.returncode != 0:
        operator.failed = step.name
    assert done.returncode == 0, (f"docs/runbook.md line {step.line} ({step.heading}) failed:\n"
                                  + "\n".join(step.runs) + "\n---\n" + done.output[-6000:]
                                  + "\n---\n" + operator.traffic.summary())
    operator.env = done.env
