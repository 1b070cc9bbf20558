#!/usr/bin/python
# Copyright: sessionshift contributors
# Apache License 2.0

DOCUMENTATION = r"""
---
module: elasticache_replication_group_info
short_description: Describe one ElastiCache replication group (its member clusters and endpoints)
description:
  - Read-only. Returns what M(sessionshift.migration.elasticache_replication_group) returns about an existing group (member
    clusters, endpoints, the described group), so that a play run without the provisioning tasks (for example
    C(--tags cloudwatch_alarms)) can learn them.
  - A group that does not exist (or is being deleted) gives C(exists=false) and empty values, not a failure.
options:
  replication_group_id:
    description: The replication group id.
    required: true
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
  register: group

- name: Use them
  ansible.builtin.debug:
    msg: "{{ group.member_clusters }}"
"""

RETURN = r"""
exists:
  description: Whether the group exists (and is not being deleted).
  returned: always
  type: bool
replication_group:
  description: The group as described (snake_case), empty when absent.
  returned: always
  type: dict
member_clusters:
  description: The member cache cluster ids (the CloudWatch CacheClusterId dimension).
  returned: always
  type: list
  elements: str
primary_endpoint:
  description: Primary endpoint C({address, port}) (cluster mode off).
  returned: when present
  type: dict
reader_endpoint:
  description: Reader endpoint C({address, port}) (cluster mode off).
  returned: when present
  type: dict
configuration_endpoint:
  description: Configuration endpoint C({address, port}) (cluster mode on).
  returned: when present
  type: dict
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sessionshift.migration.plugins.module_utils.elasticache_plan import endpoints


def main():
    module = AnsibleAWSModule(argument_spec=dict(
        replication_group_id=dict(type="str", required=True, aliases=["name"]),
    ), supports_check_mode=True)
    group_id = module.params["replication_group_id"]
    client = module.client("elasticache", retry_decorator=AWSRetry.jittered_backoff(retries=10))
    try:
        groups = client.describe_replication_groups(ReplicationGroupId=group_id, aws_retry=True)["ReplicationGroups"]
    except is_boto3_error_code("ReplicationGroupNotFoundFault"):
        groups = []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"cannot describe replication group {group_id}")
    group = groups[0] if groups and groups[0].get("Status") != "deleting" else None
    output = dict(changed=False, exists=group is not None, replication_group={}, member_clusters=[])
    if group:
        output["replication_group"] = camel_dict_to_snake_dict(group)
        output["member_clusters"] = group.get("MemberClusters", [])
        for name, endpoint in endpoints(group).items():
            output[name] = camel_dict_to_snake_dict(endpoint)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
