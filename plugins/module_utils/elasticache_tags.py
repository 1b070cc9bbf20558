# Copyright: sessionshift contributors
# Apache License 2.0

"""A replication group as the elasticache_replication_group(_info) modules return it, with its tags.

Both modules return the same shape: DescribeReplicationGroups in snake_case plus ``tags``, a dict
whose keys are the tag keys exactly as AWS stores them (never snake_cased).
"""

from __future__ import annotations

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict

# ListTagsForResource on a group that went away after it was described, or that AWS will not
# read in its current state (for example while it is being deleted): its tags are unknown.
TAGS_UNAVAILABLE = ["ReplicationGroupNotFoundFault", "InvalidReplicationGroupState"]


def group_tags(module, client, group: dict) -> dict | None:
    """The group's tags as a dict, or None when AWS will not list them (see TAGS_UNAVAILABLE).

    ``client`` must be wrapped with a retry decorator (``aws_retry=True``). Any other error fails
    the module, naming the group.
    """
    try:
        tags = client.list_tags_for_resource(ResourceName=group["ARN"], aws_retry=True)["TagList"]
    except is_boto3_error_code(TAGS_UNAVAILABLE):
        return None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"cannot list the tags of replication group "
                                        f"{group['ReplicationGroupId']}")
    return boto3_tag_list_to_ansible_dict(tags)


def group_result(group: dict, tags: dict | None) -> dict:
    """The returned group: snake_case keys, and ``tags`` untouched (omitted when unknown)."""
    result = camel_dict_to_snake_dict(group)
    if tags is not None:
        result["tags"] = tags
    return result
