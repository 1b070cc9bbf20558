#!/usr/bin/python
# Copyright: sessionshift contributors
# Apache License 2.0

DOCUMENTATION = r"""
---
module: elasticache_replication_group
short_description: Create, modify and delete an ElastiCache (Redis OSS / Valkey) replication group
description:
  - Manages a replication group with Multi-AZ and automatic failover, cluster mode on (shards and
    replicas per shard) or off, TLS (transit encryption, C(preferred) then C(required) for an existing
    group), at-rest encryption with a KMS key, an AUTH token or RBAC user groups, slow-log and
    engine-log delivery, parameter group, subnet group, security groups, windows and tags.
  - Idempotent. It compares the desired state with the described one, modifies in place what AWS
    changes in place, and refuses what needs a new group (at-rest encryption, KMS key, port, subnet
    group, cluster mode, shard count, engine downgrade) unless O(allow_replacement=true).
  - The AUTH token is write-only. It is compared through C(AuthTokenEnabled) only, and sent to an
    existing group only to enable AUTH or when O(update_auth_token=true).
  - The decisions live in C(plugins/module_utils/elasticache_plan.py) (pure Python, unit tested).
author: sessionshift contributors (!UNKNOWN)
options:
  replication_group_id:
    description: The group's id (lowercase, at most 40 characters).
    type: str
    required: true
    aliases: [name]
  state:
    description: C(present) creates or updates, C(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: The group's description.
    type: str
  engine:
    description: C(redis) or C(valkey). C(redis) to C(valkey) is an in-place upgrade, the reverse is refused.
    type: str
    choices: [redis, valkey]
    default: redis
  engine_version:
    description: Engine version, for example C(7.1). A prefix matches the patch version AWS describes.
    type: str
  node_type:
    description: Node type, for example C(cache.t4g.small).
    type: str
  cluster_mode:
    description: Cluster mode. Fixed after creation.
    type: str
    choices: [enabled, disabled]
    default: disabled
  num_node_groups:
    description: Shards (cluster mode on). Fixed after creation by this module.
    type: int
  replicas_per_node_group:
    description: Replicas in each shard. Changed in place with IncreaseReplicaCount / DecreaseReplicaCount.
    type: int
  automatic_failover:
    description: Automatic failover. Needs at least one replica.
    type: bool
  multi_az:
    description: Multi-AZ. Needs automatic failover and at least one replica.
    type: bool
  port:
    description: The port. Fixed after creation.
    type: int
  cache_subnet_group:
    description: Subnet group name. Fixed after creation.
    type: str
  security_group_ids:
    description: VPC security group ids.
    type: list
    elements: str
  cache_parameter_group:
    description: Parameter group name.
    type: str
  maintenance_window:
    description: Weekly maintenance window, C(ddd:hh24:mi-ddd:hh24:mi) in UTC.
    type: str
  snapshot_window:
    description: Daily snapshot window, C(hh24:mi-hh24:mi) in UTC.
    type: str
  snapshot_retention_limit:
    description: Days of automatic snapshots to keep (0 disables them).
    type: int
  notification_topic_arn:
    description:
      - SNS topic for the group's events (failover, node replacement, snapshot failures).
      - Set at creation and changed in place; read back from a member cluster.
    type: str
  final_snapshot_identifier:
    description:
      - Name of a snapshot AWS takes of the data before it deletes the group, for O(state=absent) and for a
        replacement (O(allow_replacement)). Omit it to delete without one.
      - Must be new each time (AWS refuses an existing snapshot name); include a date.
    type: str
  transit_encryption:
    description: TLS between clients and nodes.
    type: bool
  transit_encryption_mode:
    description:
      - C(required) refuses plain connections; C(preferred) accepts both (migration step).
      - Enabling TLS on an existing group goes through C(preferred) first, then C(required).
      - Defaults to C(required) when O(transit_encryption=true).
    type: str
    choices: [preferred, required]
  at_rest_encryption:
    description: Encryption at rest. Fixed after creation.
    type: bool
  kms_key_id:
    description: KMS key ARN (or key id) for at-rest encryption. Fixed after creation.
    type: str
  auth_token:
    description: The AUTH token, 16-128 printable ASCII characters without C(@), C("), C(/) or spaces. Write-only.
    type: str
  update_auth_token:
    description: Send O(auth_token) to a group that already has AUTH enabled (a rotation).
    type: bool
    default: false
  auth_token_update_strategy:
    description: C(ROTATE) keeps the old token valid beside the new one, C(SET) makes the new one the only one, C(DELETE) removes AUTH.
    type: str
    choices: [ROTATE, SET, DELETE]
    default: ROTATE
  user_group_ids:
    description: RBAC user group ids (instead of an AUTH token). An empty list removes them.
    type: list
    elements: str
  log_delivery:
    description: Slow-log and engine-log delivery. An empty list disables both.
    type: list
    elements: dict
    suboptions:
      log_type:
        description: Which log.
        type: str
        choices: [slow-log, engine-log]
        required: true
      destination_type:
        description: Where it goes.
        type: str
        choices: [cloudwatch-logs, kinesis-firehose]
        default: cloudwatch-logs
      destination:
        description: Log group name or Firehose delivery stream name.
        type: str
        required: true
      log_format:
        description: Format.
        type: str
        choices: [json, text]
        default: json
  apply_immediately:
    description: Apply setting changes now rather than in the maintenance window.
    type: bool
    default: true
  allow_replacement:
    description: Delete and re-create the group when a change cannot be made in place. Its data is lost.
    type: bool
    default: false
  wait:
    description: Wait until the group is available (or gone for O(state=absent)).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait, per step.
    type: int
    default: 1800
notes:
  - Several modifications are separate calls (TLS steps, AUTH, user groups); the module waits for the
    group to be available between them, within O(wait_timeout).
  - A group already in C(deleting) counts as absent.
extends_documentation_fragment: sessionshift.migration.attributes,sessionshift.migration.aws,amazon.aws.tags
"""

EXAMPLES = r"""
- name: Multi-AZ Valkey with TLS, at-rest encryption and AUTH
  sessionshift.migration.elasticache_replication_group:
    replication_group_id: sessions
    engine: valkey
    node_type: cache.t4g.small
    replicas_per_node_group: 1
    automatic_failover: true
    multi_az: true
    transit_encryption: true
    at_rest_encryption: true
    kms_key_id: "{{ kms.key_arn }}"
    auth_token: "{{ token }}"
    cache_subnet_group: sessions
    security_group_ids: ["{{ sg.group_id }}"]
    log_delivery:
      - {log_type: slow-log, destination: /elasticache/sessions/slow-log}
      - {log_type: engine-log, destination: /elasticache/sessions/engine-log}
  no_log: true
"""

RETURN = r"""
action:
  description: What the module did or would do (none, create, modify, replace, delete).
  returned: always
  type: str
steps:
  description: The AWS calls, in order, with why (the AUTH token is never shown).
  returned: always
  type: list
  elements: dict
unverified:
  description: Options that could not be compared because AWS did not describe them.
  returned: always
  type: list
  elements: str
replication_group:
  description:
    - The group as AWS describes it after the change (or as it is, in check mode), keys in snake_case; empty when
      there is none. The same fields as each element of
      RV(sessionshift.migration.elasticache_replication_group_info#module:replication_groups), among them
      C(member_clusters) and C(node_groups[0].primary_endpoint).
  returned: always
  type: dict
  sample: {replication_group_id: sessions, status: available, member_clusters: [sessions-001, sessions-002],
           tags: {app: sessionshift}}
  contains:
    tags:
      description:
        - The group's tags, a dict of tag key to value, the keys exactly as tagged (not converted to snake_case). After a change
          they are read back from AWS; in check mode or without a change they are the ones the module compared.
      returned: >-
        when there is a group and AWS lists its tags: not for a group that was deleted between the describe and the
        tag call, or whose state AWS refuses to list tags in (C(ReplicationGroupNotFoundFault),
        C(InvalidReplicationGroupState))
      type: dict
      sample: {app: sessionshift}
"""

import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sessionshift.migration.plugins.module_utils.elasticache_plan import (
    Plan,
    PlanError,
    delete_request,
    describe,
    plan_changes,
    validate,
)
from ansible_collections.sessionshift.migration.plugins.module_utils.elasticache_tags import (
    group_result,
    group_tags,
)

RETRY = AWSRetry.jittered_backoff(retries=10)
POLL_SECONDS = 15
PLAN_FIELDS = ("replication_group_id", "description", "engine", "engine_version", "node_type", "cluster_mode",
               "num_node_groups", "replicas_per_node_group", "automatic_failover", "multi_az", "port",
               "cache_subnet_group", "security_group_ids", "cache_parameter_group", "maintenance_window",
               "snapshot_window", "snapshot_retention_limit", "notification_topic_arn", "transit_encryption", "transit_encryption_mode",
               "at_rest_encryption", "kms_key_id", "auth_token", "update_auth_token", "auth_token_update_strategy",
               "user_group_ids", "log_delivery", "apply_immediately", "tags", "purge_tags")


class Group:
    """The describe and wait calls on one replication group."""

    def __init__(self, module, client):
        self.module, self.client = module, client
        self.group_id = module.params["replication_group_id"]

    def get(self):
        try:
            groups = self.client.describe_replication_groups(ReplicationGroupId=self.group_id, aws_retry=True)
        except is_boto3_error_code("ReplicationGroupNotFoundFault"):
            return None
        return groups["ReplicationGroups"][0]

    def described(self, group):
        """(the described state for the plan, the group's tags or None when AWS will not list them)"""
        member = None
        if group.get("MemberClusters"):
            try:
                member = self.client.describe_cache_clusters(
                    CacheClusterId=group["MemberClusters"][0], aws_retry=True)["CacheClusters"][0]
            except is_boto3_error_code("CacheClusterNotFound"):
                self.module.warn(f"member cluster {group['MemberClusters'][0]} cannot be described: security "
                                 "groups, subnet/parameter group, maintenance window and engine version not compared")
        tags = group_tags(self.module, self.client, group)
        return describe(group, member, tags), tags

    def wait(self, until, what):
        """Poll until the group is available (or gone), within wait_timeout."""
        deadline = time.monotonic() + self.module.params["wait_timeout"]
        while True:
            group = self.get()
            status = group["Status"] if group else "absent"
            if status == until:
                return group
            if status in ("create-failed", "incompatible-network") or (until == "available" and status == "absent"):
                self.module.fail_json(msg=f"replication group {self.group_id} is {status} {what}"
                                          + ("" if status == "absent" else "; it exists: inspect or delete it"),
                                      status=status)
            if time.monotonic() >= deadline:
                self.module.fail_json(msg=f"replication group {self.group_id} still {status} after "
                                          f"{self.module.params['wait_timeout']}s {what}; it exists, re-run to "
                                          "continue once it is available", status=status)
            time.sleep(POLL_SECONDS)


def check_references(module, client, desired):
    """Fail before creating when the subnet group or the KMS key does not exist.

    In check mode this only warns: the tasks before this one, which would
    create them, changed nothing either.
    """
    def missing(message, maker):
        if module.check_mode:
            module.warn(f"{message} yet: in check mode the task that makes it ({maker}) made nothing either")
        else:
            module.fail_json(msg=f"{message}: create it first ({maker}); nothing was created")

    if desired.get("cache_subnet_group"):
        try:
            client.describe_cache_subnet_groups(CacheSubnetGroupName=desired["cache_subnet_group"], aws_retry=True)
        except is_boto3_error_code("CacheSubnetGroupNotFoundFault"):
            missing(f"cache subnet group {desired['cache_subnet_group']} does not exist",
                    "community.aws.elasticache_subnet_group")
    if desired.get("kms_key_id"):
        try:
            module.client("kms", retry_decorator=RETRY).describe_key(KeyId=desired["kms_key_id"], aws_retry=True)
        except is_boto3_error_code(["NotFoundException", "ValidationException"]):
            missing(f"KMS key {desired['kms_key_id']} does not exist in this region", "amazon.aws.kms_key")


def execute(module, client, group, plan):
    """Run the plan's steps in order, waiting for 'available' between modifications."""
    arn = None
    for index, step in enumerate(plan.steps):
        operation, params = step["operation"], dict(step["params"])
        if operation in ("add_tags_to_resource", "remove_tags_from_resource"):
            params["ResourceName"] = arn or group.get()["ARN"]
        elif operation == "create_replication_group":
            if index > 0:  # a replacement: the old group must be gone first
                group.wait("absent", "before re-creating it")
        else:  # AWS refuses to modify or delete a group that is still busy
            group.wait("available", f"before: {step['why']}")
        try:
            response = getattr(client, operation)(aws_retry=True, **params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            done = [previous["why"] for previous in plan.steps[:index]]
            exists = "the group does not exist" if operation == "create_replication_group" and index == 0 else (
                f"the group exists; steps done: {done or 'none'}")
            module.fail_json_aws(error, msg=f"{operation} failed ({step['why']}); {exists}")
        arn = (response.get("ReplicationGroup") or {}).get("ARN", arn)
    if module.params["wait"]:
        group.wait("absent" if plan.action == "delete" else "available", "after the change")


def main():
    log_options = dict(
        log_type=dict(type="str", required=True, choices=["slow-log", "engine-log"]),
        destination_type=dict(type="str", default="cloudwatch-logs", choices=["cloudwatch-logs", "kinesis-firehose"]),
        destination=dict(type="str", required=True),
        log_format=dict(type="str", default="json", choices=["json", "text"]))
    module = AnsibleAWSModule(argument_spec=dict(
        replication_group_id=dict(type="str", required=True, aliases=["name"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"), engine=dict(type="str", default="redis", choices=["redis", "valkey"]),
        engine_version=dict(type="str"), node_type=dict(type="str"),
        cluster_mode=dict(type="str", default="disabled", choices=["enabled", "disabled"]),
        num_node_groups=dict(type="int"), replicas_per_node_group=dict(type="int"),
        automatic_failover=dict(type="bool"), multi_az=dict(type="bool"), port=dict(type="int"),
        cache_subnet_group=dict(type="str"), security_group_ids=dict(type="list", elements="str"),
        cache_parameter_group=dict(type="str"), maintenance_window=dict(type="str"),
        snapshot_window=dict(type="str"), snapshot_retention_limit=dict(type="int"),
        notification_topic_arn=dict(type="str"), final_snapshot_identifier=dict(type="str"),
        transit_encryption=dict(type="bool"),
        transit_encryption_mode=dict(type="str", choices=["preferred", "required"]),
        at_rest_encryption=dict(type="bool"), kms_key_id=dict(type="str"),
        auth_token=dict(type="str", no_log=True), update_auth_token=dict(type="bool", default=False),
        auth_token_update_strategy=dict(type="str", default="ROTATE", choices=["ROTATE", "SET", "DELETE"],
                                        no_log=False),
        user_group_ids=dict(type="list", elements="str"),
        log_delivery=dict(type="list", elements="dict", options=log_options),
        apply_immediately=dict(type="bool", default=True), allow_replacement=dict(type="bool", default=False),
        wait=dict(type="bool", default=True), wait_timeout=dict(type="int", default=1800),
        tags=dict(type="dict", aliases=["resource_tags"]), purge_tags=dict(type="bool", default=True),
    ), supports_check_mode=True)
    desired = {name: module.params[name] for name in PLAN_FIELDS}
    if module.params["state"] == "present":
        try:
            validate(desired)  # before any AWS call
        except PlanError as error:
            module.fail_json(msg=f"invalid options for {desired['replication_group_id']}: {error}")
    client = module.client("elasticache", retry_decorator=RETRY)
    group = Group(module, client)
    current_tags = None
    try:
        current = group.get()
        if module.params["state"] == "absent":
            plan = plan_delete(current, group.group_id, module.params["final_snapshot_identifier"])
        else:
            described, current_tags = group.described(current) if current else (None, None)
            plan = plan_changes(desired, described, allow_replacement=module.params["allow_replacement"],
                                final_snapshot=module.params["final_snapshot_identifier"])
    except PlanError as error:
        module.fail_json(msg=f"invalid options for {group.group_id}: {error}")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"cannot describe replication group {group.group_id}")
    if plan.action == "replace" and not plan.steps:
        module.fail_json(msg=f"replication group {group.group_id} cannot be changed in place: "
                             f"{'; '.join(plan.replace_reasons)}. Set allow_replacement: true to delete and re-create "
                             "it (its data is lost), or keep the current values", changes=plan.changes)
    if plan.action in ("create", "replace"):
        check_references(module, client, desired)
    if plan.changed and not module.check_mode:
        execute(module, client, group, plan)
        final = group.get()
        final_tags = group_tags(module, client, final) if final else None  # read back, never computed
    else:  # the tags listed to plan are current; state: absent plans without them
        final, final_tags = current, current_tags
        if module.params["state"] == "absent" and final:
            final_tags = group_tags(module, client, final)
    module.exit_json(**result(module, plan, final, final_tags))


def plan_delete(current, group_id, final_snapshot=None):
    if current is None or current["Status"] == "deleting":
        return Plan("none")
    why = "state: absent" + (f" (final snapshot {final_snapshot})" if final_snapshot else "")
    return Plan("delete", steps=[{"operation": "delete_replication_group", "why": why,
                                  "params": delete_request(group_id, final_snapshot)}],
                changes={"state": {"before": "present", "after": "absent"}})


def result(module, plan, group, tags):
    steps = [{"operation": step["operation"], "why": step["why"],
              "params": {k: v for k, v in step["params"].items() if k != "AuthToken"}} for step in plan.steps]
    output = dict(changed=plan.changed, action=plan.action, steps=steps, unverified=sorted(set(plan.unverified)),
                  replication_group=group_result(group, tags) if group else {})
    if module._diff:
        output["diff"] = {"before": {name: change["before"] for name, change in plan.changes.items()},
                          "after": {name: change["after"] for name, change in plan.changes.items()}}
    return output


if __name__ == "__main__":
    main()
