#!/usr/bin/python
# Copyright: sessionshift contributors
# Apache License 2.0

DOCUMENTATION = r"""
---
module: cloudwatch_dashboard
short_description: Put or delete a CloudWatch dashboard from a structured definition
description:
  - Writes a CloudWatch dashboard whose body is given as YAML/dict (O(body) or just O(widgets)).
  - Idempotent. The current body and the desired one are compared as canonical JSON (sorted keys), so
    key order and whitespace never cause a change.
author: sessionshift contributors (!UNKNOWN)
options:
  name:
    description: Dashboard name.
    type: str
    required: true
    aliases: [dashboard_name]
  state:
    description: C(present) puts the dashboard, C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  body:
    description: The whole dashboard body (C(widgets), C(start), C(periodOverride)...).
    type: dict
  widgets:
    description: The widgets; merged into O(body) when both are given.
    type: list
    elements: dict
extends_documentation_fragment: sessionshift.migration.attributes,sessionshift.migration.aws
"""

EXAMPLES = r"""
- name: Dashboard with one metric widget
  sessionshift.migration.cloudwatch_dashboard:
    name: sessions
    widgets:
      - type: metric
        x: 0
        y: 0
        width: 12
        height: 6
        properties:
          title: Engine CPU
          region: ap-northeast-1
          metrics: [[AWS/ElastiCache, EngineCPUUtilization, CacheClusterId, sessions-001]]
"""

RETURN = r"""
dashboard_arn:
  description: The dashboard ARN.
  returned: when present
  type: str
body:
  description: The body sent (canonical JSON).
  returned: when present
  type: str
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sessionshift.migration.plugins.module_utils.cloudwatch_dashboard import (
    DashboardError,
    body_differs,
    canonical_json,
    dashboard_definition,
    pretty_json,
)


def current_dashboard(client, name):
    try:
        return client.get_dashboard(DashboardName=name, aws_retry=True)
    except is_boto3_error_code("ResourceNotFound"):
        return None


def main():
    module = AnsibleAWSModule(argument_spec=dict(
        name=dict(type="str", required=True, aliases=["dashboard_name"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        body=dict(type="dict"), widgets=dict(type="list", elements="dict"),
    ), supports_check_mode=True, required_if=[("state", "present", ("body", "widgets"), True)])
    name, present = module.params["name"], module.params["state"] == "present"
    desired = None
    if present:
        try:
            desired = dashboard_definition(module.params["body"], module.params["widgets"])
        except DashboardError as error:
            module.fail_json(msg=f"dashboard {name}: {error}")
    client = module.client("cloudwatch", retry_decorator=AWSRetry.jittered_backoff(retries=10))
    try:
        current = current_dashboard(client, name)
        before = current["DashboardBody"] if current else None
        changed = body_differs(desired, before) if present else current is not None
        if changed and not module.check_mode:
            if present:
                response = client.put_dashboard(DashboardName=name, DashboardBody=canonical_json(desired),
                                                aws_retry=True)
                problems = response.get("DashboardValidationMessages") or []
                if problems:
                    module.warn(f"CloudWatch accepted dashboard {name} with messages: {problems}")
            else:
                client.delete_dashboards(DashboardNames=[name], aws_retry=True)
        arn = (current or {}).get("DashboardArn")
        if present and changed and not module.check_mode:
            arn = current_dashboard(client, name)["DashboardArn"]  # put_dashboard does not return it
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"cannot {'put' if present else 'delete'} dashboard {name}")
    result = dict(changed=changed)
    if present:
        result.update(body=canonical_json(desired), dashboard_arn=arn)
    if module._diff:
        result["diff"] = dict(before=pretty_json(before) if before else "",
                              after=pretty_json(desired) if present else "",
                              before_header=f"dashboard {name}", after_header=f"dashboard {name}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
