#!/usr/bin/python
# Copyright: sessionshift contributors
# Apache License 2.0

DOCUMENTATION = r"""
---
module: elasticache_replication_group_info
short_description: Describe ElastiCache replication groups (member clusters, node groups, endpoints)
description:
  - Read-only. Lists the replication groups AWS describes, or the one named by O(replication_group_id), so that a play
    run without the provisioning tasks (for example C(--tags cloudwatch_alarms)) can learn their member clusters and
    endpoints.
  - A named group that does not exist gives an empty RV(replication_groups), not a failure. A group being deleted is
    listed with RV(replication_groups[].status=deleting).
  - Each group carries its tags (one C(ListTagsForResource) call per group). A group whose tags AWS will not list
    (it went away after it was described, or its state forbids it) is listed without RV(replication_groups[].tags),
    not a failure.
options:
  replication_group_id:
    description: The replication group id. Omit it to list every group in the region.
    type: str
    aliases: [name]
author:
  - sessionshift contributors (!UNKNOWN)
extends_documentation_fragment: sessionshift.migration.attributes.no_diff,sessionshift.migration.aws
"""

EXAMPLES = r"""
- name: The member clusters to put alarms on
  sessionshift.migration.elasticache_replication_group_info:
    replication_group_id: sessions
  register: described

- name: Use them (an empty list when the group does not exist)
  ansible.builtin.debug:
    msg: "{{ (described.replication_groups | first).member_clusters }}"
  when: described.replication_groups | length > 0

- name: Every group in the region
  sessionshift.migration.elasticache_replication_group_info:
  register: all_groups
"""

RETURN = r"""
replication_groups:
  description:
    - The groups as DescribeReplicationGroups describes them, keys in snake_case (the fields below, and any other the
      API returns). Empty when the named group does not exist.
  returned: always
  type: list
  elements: dict
  contains:
    replication_group_id:
      description: The group's id.
      returned: always
      type: str
      sample: sessions
    arn:
      description: The group's ARN.
      returned: always
      type: str
      sample: arn:aws:elasticache:ap-northeast-1:123456789012:replicationgroup:sessions
    status:
      description: C(creating), C(available), C(modifying), C(deleting), C(create-failed) or C(snapshotting).
      returned: always
      type: str
      sample: available
    member_clusters:
      description: The member cache cluster ids (the CloudWatch C(CacheClusterId) dimension).
      returned: always
      type: list
      elements: str
      sample: [sessions-001, sessions-002]
    node_groups:
      description: The shards; one when cluster mode is off.
      returned: always
      type: list
      elements: dict
      contains:
        node_group_id:
          description: The shard's id.
          returned: always
          type: str
          sample: "0001"
        primary_endpoint:
          description: Where writes go, C({address, port}) (cluster mode off).
          returned: when cluster mode is off
          type: dict
          sample: {address: master.sessions.abc123.apne1.cache.amazonaws.com, port: 6379}
        reader_endpoint:
          description: Where reads spread over the replicas, C({address, port}) (cluster mode off).
          returned: when cluster mode is off
          type: dict
        node_group_members:
          description: The nodes (C(cache_cluster_id), C(current_role), C(preferred_availability_zone), ...).
          returned: always
          type: list
          elements: dict
    configuration_endpoint:
      description: The cluster-mode entry point C({address, port}).
      returned: when cluster mode is on
      type: dict
    cluster_enabled:
      description: Whether cluster mode is on.
      returned: always
      type: bool
    automatic_failover:
      description: C(enabled), C(disabled), C(enabling) or C(disabling).
      returned: always
      type: str
    multi_az:
      description: C(enabled) or C(disabled).
      returned: always
      type: str
    transit_encryption_enabled:
      description: Whether TLS is on (see C(transit_encryption_mode)).
      returned: always
      type: bool
    at_rest_encryption_enabled:
      description: Whether the data is encrypted at rest.
      returned: always
      type: bool
    auth_token_enabled:
      description: Whether the group requires an AUTH token (the token itself is never described).
      returned: always
      type: bool
    tags:
      description:
        - The group's tags, a dict of tag key to value; the keys exactly as tagged (not converted to snake_case). Empty when it has
          none.
      returned: >-
        when AWS lists them: not for a group that was deleted between the describe and the tag call, or whose
        state AWS refuses to list tags in (C(ReplicationGroupNotFoundFault), C(InvalidReplicationGroupState))
      type: dict
      sample: {app: sessionshift, CostCenter: platform}
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sessionshift.migration.plugins.module_utils.elasticache_tags import (
    group_result,
    group_tags,
)

RETRY = AWSRetry.jittered_backoff(retries=10)


@RETRY
def describe_replication_groups(client, **params):
    return client.get_paginator("describe_replication_groups").paginate(**params).build_full_result()[
        "ReplicationGroups"]


def main():
    module = AnsibleAWSModule(argument_spec=dict(
        replication_group_id=dict(type="str", aliases=["name"]),
    ), supports_check_mode=True)
    group_id = module.params["replication_group_id"]
    params = {"ReplicationGroupId": group_id} if group_id else {}
    client = module.client("elasticache", retry_decorator=RETRY)
    try:
        groups = describe_replication_groups(client, **params)
    except is_boto3_error_code("ReplicationGroupNotFoundFault"):
        groups = []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"cannot describe replication group{' ' + group_id if group_id else 's'}")
    module.exit_json(changed=False, replication_groups=[group_result(group, group_tags(module, client, group))
                                                        for group in groups])


if __name__ == "__main__":
    main()
