"""elasticache_replication_group's main() against botocore Stubber: the paths moto cannot show.

The stubbed responses follow the ElastiCache API reference shapes (Stubber validates
both our parameters and the responses against botocore's service model).
"""

from __future__ import annotations

import json

import boto3
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.stub import ANY, Stubber

from tests.conftest import load_module

module = load_module("elasticache_replication_group")
info_module = load_module("elasticache_replication_group_info")

TOKEN = "Abcdefgh-12345678!#$%"
KMS_ARN = "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ARN = "arn:aws:elasticache:ap-northeast-1:123456789012:replicationgroup:sessions"


def group(status="available", **overrides):
    described = {
        "ReplicationGroupId": "sessions",
        "Description": "sessions",
        "Status": status,
        "MemberClusters": ["sessions-001", "sessions-002"],
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "Status": status,
                "PrimaryEndpoint": {
                    "Address": "master.sessions.abc123.apne1.cache.amazonaws.com",
                    "Port": 6379,
                },
                "ReaderEndpoint": {
                    "Address": "replica.sessions.abc123.apne1.cache.amazonaws.com",
                    "Port": 6379,
                },
                "NodeGroupMembers": [
                    {
                        "CacheClusterId": "sessions-001",
                        "CacheNodeId": "0001",
                        "CurrentRole": "primary",
                        "PreferredAvailabilityZone": "ap-northeast-1a",
                    },
                    {
                        "CacheClusterId": "sessions-002",
                        "CacheNodeId": "0001",
                        "CurrentRole": "replica",
                        "PreferredAvailabilityZone": "ap-northeast-1c",
                    },
                ],
            }
        ],
        "AutomaticFailover": "enabled",
        "MultiAZ": "enabled",
        "SnapshotRetentionLimit": 7,
        "SnapshotWindow": "15:00-16:00",
        "ClusterEnabled": False,
        "CacheNodeType": "cache.t4g.small",
        "AuthTokenEnabled": True,
        "TransitEncryptionEnabled": True,
        "TransitEncryptionMode": "required",
        "AtRestEncryptionEnabled": True,
        "KmsKeyId": KMS_ARN,
        "ARN": ARN,
        "UserGroupIds": [],
        "LogDeliveryConfigurations": [],
        "ClusterMode": "disabled",
        "Engine": "valkey",
    }
    described.update(overrides)
    return {"ReplicationGroups": [{k: v for k, v in described.items() if v is not None}]}


MEMBER = {
    "CacheClusters": [
        {
            "CacheClusterId": "sessions-001",
            "EngineVersion": "8.0.1",
            "CacheClusterStatus": "available",
            "CacheParameterGroup": {"CacheParameterGroupName": "sessions", "ParameterApplyStatus": "in-sync"},
            "SecurityGroups": [{"SecurityGroupId": "sg-1", "Status": "active"}],
            "PreferredMaintenanceWindow": "sun:17:00-sun:18:00",
            "CacheSubnetGroupName": "sessions",
        }
    ]
}
TAGS = {"TagList": [{"Key": "app", "Value": "sessionshift"}]}
NOT_FOUND = ("ReplicationGroupNotFoundFault", "ReplicationGroup sessions not found.")


def args(**overrides):
    params = dict(
        replication_group_id="sessions",
        description="sessions",
        engine="valkey",
        engine_version="8.0",
        node_type="cache.t4g.small",
        replicas_per_node_group=1,
        automatic_failover=True,
        multi_az=True,
        cache_subnet_group="sessions",
        security_group_ids=["sg-1"],
        cache_parameter_group="sessions",
        maintenance_window="sun:17:00-sun:18:00",
        snapshot_window="15:00-16:00",
        snapshot_retention_limit=7,
        transit_encryption=True,
        at_rest_encryption=True,
        kms_key_id=KMS_ARN,
        auth_token=TOKEN,
        tags={"app": "sessionshift"},
        wait_timeout=600,
        region="ap-northeast-1",
    )
    params.update(overrides)
    return params


@pytest.fixture
def aws(monkeypatch):
    """Stubbed elasticache and kms clients behind the module's real retry wrapper."""
    clients = {
        name: boto3.client(
            name, region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        for name in ("elasticache", "kms")
    }
    stubs = {name: Stubber(client) for name, client in clients.items()}

    def client(self, service, retry_decorator=None, **extra):
        return RetryingBotoClientWrapper(clients[service], retry_decorator)

    monkeypatch.setattr(AnsibleAWSModule, "client", client)
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # backoff and polling without waiting
    for stub in stubs.values():
        stub.activate()
    yield stubs
    for stub in stubs.values():
        stub.assert_no_pending_responses()
        stub.deactivate()


def run(params, capsys, check_mode=False, diff=False, main=module.main):
    params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(params), pytest.raises(SystemExit):
        main()
    output = capsys.readouterr().out
    assert TOKEN not in output
    return json.loads(output)


def expect_described(stub, response=None):
    stub.add_response("describe_replication_groups", response or group(), {"ReplicationGroupId": "sessions"})


def expect_full_describe(stub, response=None):
    expect_described(stub, response)
    stub.add_response("describe_cache_clusters", MEMBER, {"CacheClusterId": "sessions-001"})
    expect_tags(stub)


def expect_tags(stub, response=TAGS):
    stub.add_response("list_tags_for_resource", response, {"ResourceName": ARN})


def test_create_checks_references_creates_and_waits(aws, capsys):
    ec = aws["elasticache"]
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_response(
        "describe_cache_subnet_groups",
        {"CacheSubnetGroups": [{"CacheSubnetGroupName": "sessions"}]},
        {"CacheSubnetGroupName": "sessions"},
    )
    aws["kms"].add_response(
        "describe_key", {"KeyMetadata": {"KeyId": "1234", "Arn": KMS_ARN}}, {"KeyId": KMS_ARN}
    )
    ec.add_response(
        "create_replication_group",
        {"ReplicationGroup": group("creating")["ReplicationGroups"][0]},
        {**module.plan_changes(module_desired(), None).steps[0]["params"]},
    )
    expect_described(ec, group("creating"))
    expect_described(ec)
    expect_described(ec)
    expect_tags(ec)  # the tags the new group has, read back
    result = run(args(), capsys)
    assert result["changed"] and result["action"] == "create"
    described = result["replication_group"]
    assert described["tags"] == {"app": "sessionshift"}
    assert described["member_clusters"] == ["sessions-001", "sessions-002"]
    assert described["node_groups"][0]["primary_endpoint"]["address"].startswith("master.")
    assert described["node_groups"][0]["reader_endpoint"]["port"] == 6379


def module_desired(**overrides):
    params = {name: None for name in module.PLAN_FIELDS}
    params.update(
        engine="redis",
        cluster_mode="disabled",
        update_auth_token=False,
        auth_token_update_strategy="ROTATE",
        apply_immediately=True,
        purge_tags=True,
    )
    params.update({k: v for k, v in args(**overrides).items() if k in module.PLAN_FIELDS})
    return params


def test_throttling_is_retried_with_backoff_then_succeeds(aws, capsys):
    ec = aws["elasticache"]
    ec.add_client_error("describe_replication_groups", "Throttling", "Rate exceeded", http_status_code=400)
    ec.add_client_error("describe_replication_groups", "Throttling", "Rate exceeded", http_status_code=400)
    expect_described(ec)
    ec.add_response("describe_cache_clusters", MEMBER, {"CacheClusterId": "sessions-001"})
    ec.add_client_error("list_tags_for_resource", "Throttling", "Rate exceeded", http_status_code=400)
    ec.add_response("list_tags_for_resource", TAGS, {"ResourceName": ARN})
    result = run(args(), capsys)
    assert result["changed"] is False and result["action"] == "none" and result["unverified"] == []


def test_throttling_that_never_ends_fails_with_the_request_context(aws, capsys, monkeypatch):
    monkeypatch.setattr(module, "RETRY", module.AWSRetry.jittered_backoff(retries=3))
    ec = aws["elasticache"]
    for _ in range(3):
        ec.add_client_error(
            "describe_replication_groups", "Throttling", "Rate exceeded", http_status_code=400
        )
    result = run(args(), capsys)
    assert result["failed"] and "cannot describe replication group sessions" in result["msg"]
    assert result["error"]["code"] == "Throttling" and "boto3_version" in result


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_token": "too-short"}, "16-128 characters"),
        ({"auth_token": "with space 0123456789"}, "space"),
        ({"multi_az": True, "automatic_failover": False}, "multi_az: true needs automatic_failover"),
        ({"transit_encryption": False}, "auth_token needs transit_encryption"),
    ],
)
def test_bad_input_fails_before_any_aws_call(aws, capsys, overrides, message):
    result = run(args(**overrides), capsys)  # no stubbed response: any call would raise
    assert result["failed"] and message in result["msg"]


def test_missing_subnet_group_fails_before_create(aws, capsys):
    ec = aws["elasticache"]
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_client_error(
        "describe_cache_subnet_groups", "CacheSubnetGroupNotFoundFault", "not found", http_status_code=404
    )
    result = run(args(), capsys)
    assert result["failed"] and "subnet group sessions does not exist" in result["msg"]
    assert "nothing was created" in result["msg"]


def test_missing_kms_key_fails_before_create(aws, capsys):
    ec = aws["elasticache"]
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_response(
        "describe_cache_subnet_groups", {"CacheSubnetGroups": []}, {"CacheSubnetGroupName": "sessions"}
    )
    aws["kms"].add_client_error("describe_key", "NotFoundException", "Key not found", http_status_code=400)
    result = run(args(), capsys)
    assert result["failed"] and f"KMS key {KMS_ARN} does not exist" in result["msg"]


def test_a_group_that_fails_after_creation_is_reported_as_existing(aws, capsys):
    ec = aws["elasticache"]
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_response(
        "describe_cache_subnet_groups", {"CacheSubnetGroups": []}, {"CacheSubnetGroupName": "sessions"}
    )
    aws["kms"].add_response("describe_key", {"KeyMetadata": {"KeyId": "1234"}}, {"KeyId": KMS_ARN})
    ec.add_response(
        "create_replication_group", {"ReplicationGroup": group("creating")["ReplicationGroups"][0]}, None
    )
    expect_described(ec, group("create-failed"))
    result = run(args(), capsys)
    assert result["failed"] and "is create-failed" in result["msg"] and "it exists" in result["msg"]


def test_check_mode_reports_the_tls_steps_without_calling_modify(aws, capsys):
    ec = aws["elasticache"]
    expect_full_describe(
        ec, group(TransitEncryptionEnabled=False, TransitEncryptionMode=None, AuthTokenEnabled=False)
    )
    result = run(args(), capsys, check_mode=True, diff=True)
    assert result["changed"] and result["action"] == "modify"
    assert [step["params"].get("TransitEncryptionMode") for step in result["steps"]] == [
        "preferred",
        "required",
        None,
    ]
    assert "AuthToken" not in result["steps"][2]["params"]
    assert result["diff"]["after"]["transit_encryption"] == "required"
    assert result["diff"]["before"]["auth_token_enabled"] is False


def test_tls_then_auth_are_applied_in_order_waiting_between_steps(aws, capsys):
    ec = aws["elasticache"]
    expect_full_describe(
        ec, group(TransitEncryptionEnabled=False, TransitEncryptionMode=None, AuthTokenEnabled=False)
    )
    base = {"ReplicationGroupId": "sessions", "ApplyImmediately": True}
    for params in (
        {"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"},
        {"TransitEncryptionMode": "required"},
        {"AuthToken": TOKEN, "AuthTokenUpdateStrategy": "ROTATE"},
    ):
        expect_described(ec, group("modifying"))  # the previous step is still running: poll
        expect_described(ec)
        ec.add_response(
            "modify_replication_group",
            {"ReplicationGroup": group("modifying")["ReplicationGroups"][0]},
            {**base, **params},
        )
    expect_described(ec)  # wait after the last step
    expect_described(ec)  # the final state
    expect_tags(ec)
    result = run(args(), capsys)
    assert result["changed"] and len(result["steps"]) == 3


def test_a_change_that_needs_a_new_group_is_refused_with_the_reason(aws, capsys):
    expect_full_describe(aws["elasticache"])
    result = run(args(port=6380), capsys)
    assert result["failed"] and "cannot be changed in place" in result["msg"]
    assert "port" in result["msg"] and "allow_replacement" in result["msg"]


def test_allowed_replacement_deletes_waits_until_gone_and_creates(aws, capsys):
    ec = aws["elasticache"]
    expect_full_describe(ec)
    ec.add_response(
        "describe_cache_subnet_groups", {"CacheSubnetGroups": []}, {"CacheSubnetGroupName": "sessions"}
    )
    aws["kms"].add_response("describe_key", {"KeyMetadata": {"KeyId": "1234"}}, {"KeyId": KMS_ARN})
    expect_described(ec, group("modifying"))  # AWS refuses to delete a busy group: wait first
    expect_described(ec)
    ec.add_response(
        "delete_replication_group",
        {"ReplicationGroup": group("deleting")["ReplicationGroups"][0]},
        {"ReplicationGroupId": "sessions"},
    )
    expect_described(ec, group("deleting"))
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_response(
        "create_replication_group", {"ReplicationGroup": group("creating")["ReplicationGroups"][0]}, None
    )
    expect_described(ec)
    expect_described(ec)
    expect_tags(ec)
    result = run(args(port=6380, allow_replacement=True), capsys)
    assert result["changed"] and result["action"] == "replace"
    assert [step["operation"] for step in result["steps"]] == [
        "delete_replication_group",
        "create_replication_group",
    ]


def test_delete_waits_until_the_group_is_gone(aws, capsys):
    ec = aws["elasticache"]
    expect_described(ec)
    expect_described(ec)  # available: delete now
    ec.add_response(
        "delete_replication_group",
        {"ReplicationGroup": group("deleting")["ReplicationGroups"][0]},
        {"ReplicationGroupId": "sessions"},
    )
    expect_described(ec, group("deleting"))
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    result = run({"replication_group_id": "sessions", "state": "absent", "region": "ap-northeast-1"}, capsys)
    assert result["changed"] and result["action"] == "delete" and result["replication_group"] == {}


def test_a_group_already_deleting_counts_as_absent(aws, capsys):
    ec = aws["elasticache"]
    expect_described(ec, group("deleting"))
    ec.add_client_error(
        "list_tags_for_resource", "InvalidReplicationGroupState", "sessions is deleting", http_status_code=400
    )
    result = run(
        {"replication_group_id": "sessions", "state": "absent", "wait": False, "region": "ap-northeast-1"},
        capsys,
    )
    assert result["changed"] is False and "failed" not in result
    # AWS will not list its tags: the group is returned without them, not with guessed ones.
    assert result["replication_group"]["status"] == "deleting" and "tags" not in result["replication_group"]


def test_a_timeout_says_the_group_exists(aws, capsys, monkeypatch):
    ec = aws["elasticache"]
    expect_full_describe(ec, group(SnapshotRetentionLimit=1))
    expect_described(ec)
    ec.add_response(
        "modify_replication_group",
        {"ReplicationGroup": group("modifying")["ReplicationGroups"][0]},
        {"ReplicationGroupId": "sessions", "ApplyImmediately": True, "SnapshotRetentionLimit": 7},
    )
    clock = iter(range(0, 10_000, 400))
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    for _ in range(2):  # polls at t=400 and t=800; at t=1200 the 600 s budget is spent
        expect_described(ec, group("modifying"))
    result = run(args(), capsys)
    assert result["failed"] and "still modifying after 600s" in result["msg"] and "it exists" in result["msg"]


def test_modify_errors_say_which_steps_were_done(aws, capsys):
    ec = aws["elasticache"]
    expect_full_describe(ec, group(TransitEncryptionMode="preferred", SnapshotRetentionLimit=1))
    expect_described(ec)
    ec.add_response(
        "modify_replication_group",
        {"ReplicationGroup": group("modifying")["ReplicationGroups"][0]},
        ANY_PARAMS,
    )
    expect_described(ec)
    ec.add_client_error(
        "modify_replication_group", "InvalidReplicationGroupState", "not available", http_status_code=400
    )
    result = run(args(), capsys)
    assert result["failed"] and "the group exists; steps done: ['change settings in place" in result["msg"]
    assert result["error"]["code"] == "InvalidReplicationGroupState"


ANY_PARAMS = {"ReplicationGroupId": ANY, "ApplyImmediately": ANY, "SnapshotRetentionLimit": ANY}


def test_delete_takes_the_named_final_snapshot(aws, capsys):
    """moto ignores FinalSnapshotIdentifier (no snapshot appears), so the request is checked here."""
    ec = aws["elasticache"]
    expect_described(ec)
    expect_described(ec)
    ec.add_response(
        "delete_replication_group",
        {"ReplicationGroup": group("deleting")["ReplicationGroups"][0]},
        {"ReplicationGroupId": "sessions", "FinalSnapshotIdentifier": "sessions-final-20261130"},
    )
    expect_described(ec, group("deleting"))
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    ec.add_client_error("describe_replication_groups", *NOT_FOUND, http_status_code=404)
    result = run({"replication_group_id": "sessions", "state": "absent", "region": "ap-northeast-1",
                  "final_snapshot_identifier": "sessions-final-20261130"}, capsys)
    assert result["changed"]
    assert result["steps"][0]["params"]["FinalSnapshotIdentifier"] == "sessions-final-20261130"


NEW_TOKEN = "Zyxwvuts-87654321!#$%"


@pytest.mark.parametrize("strategy", ["ROTATE", "SET"])
def test_a_rotation_step_sends_the_token_with_its_strategy_and_waits(aws, capsys, strategy):
    """The two requests of playbooks/rotate_auth_token.yml, step by step.

    moto's modify_replication_group drops AuthToken and AuthTokenUpdateStrategy (it models
    neither: a group keeps its creation token), so the exact request is pinned here; the
    playbook itself runs against the moto server in test_phase1_moto.py.
    """
    ec = aws["elasticache"]
    expect_full_describe(ec)  # AUTH enabled: nothing else differs
    expect_described(ec)  # available: the step may start
    ec.add_response(
        "modify_replication_group",
        {"ReplicationGroup": group("modifying")["ReplicationGroups"][0]},
        {"ReplicationGroupId": "sessions", "ApplyImmediately": True, "AuthToken": NEW_TOKEN,
         "AuthTokenUpdateStrategy": strategy},
    )
    expect_described(ec, group("modifying"))  # the step runs: the next one must wait for it
    expect_described(ec)
    expect_described(ec)  # the final state
    expect_tags(ec)
    rotation = args(auth_token=NEW_TOKEN, update_auth_token=True, auth_token_update_strategy=strategy)
    result = run(rotation, capsys)
    assert result["changed"] and result["action"] == "modify"
    [step] = result["steps"]
    assert step["params"]["AuthTokenUpdateStrategy"] == strategy and "AuthToken" not in step["params"]
    assert NEW_TOKEN not in json.dumps(result)


def test_a_rotation_step_in_check_mode_reports_it_without_calling_modify(aws, capsys):
    expect_full_describe(aws["elasticache"])
    result = run(args(auth_token=NEW_TOKEN, update_auth_token=True, auth_token_update_strategy="SET"), capsys,
                 check_mode=True)
    assert result["changed"]
    assert [step["params"]["AuthTokenUpdateStrategy"] for step in result["steps"]] == ["SET"]


def test_without_update_auth_token_a_new_token_is_not_sent(aws, capsys):
    expect_full_describe(aws["elasticache"])
    result = run(args(auth_token=NEW_TOKEN), capsys)
    assert not result["changed"] and result["steps"] == []


def test_after_a_tag_change_the_tags_are_read_back_from_aws(aws, capsys):
    ec = aws["elasticache"]
    expect_described(ec)
    ec.add_response("describe_cache_clusters", MEMBER, {"CacheClusterId": "sessions-001"})
    expect_tags(ec, {"TagList": [{"Key": "app", "Value": "old"}, {"Key": "Cost-Center", "Value": "web"}]})
    expect_described(ec)  # the ARN to tag
    ec.add_response("add_tags_to_resource", {"TagList": []},
                    {"ResourceName": ARN, "Tags": [{"Key": "app", "Value": "sessionshift"}]})
    expect_described(ec)  # the wait after the change
    expect_described(ec)  # the final state
    # What AWS answers now (here it also kept a tag another tool added meanwhile): returned as read.
    after = [{"Key": "Cost-Center", "Value": "web"}, {"Key": "app", "Value": "sessionshift"},
             {"Key": "Owner", "Value": "ops"}]
    expect_tags(ec, {"TagList": after})
    result = run(args(purge_tags=False), capsys)
    assert result["changed"] and [step["operation"] for step in result["steps"]] == ["add_tags_to_resource"]
    tags = result["replication_group"]["tags"]
    assert tags == {"Cost-Center": "web", "app": "sessionshift", "Owner": "ops"}


def test_no_change_returns_the_tags_it_compared_without_a_second_call(aws, capsys):
    expect_full_describe(aws["elasticache"])  # one list_tags_for_resource; the fixture fails on another
    result = run(args(), capsys)
    assert not result["changed"] and result["replication_group"]["tags"] == {"app": "sessionshift"}


def test_a_group_gone_before_its_tags_are_listed_is_not_a_failure(aws, capsys):
    ec = aws["elasticache"]
    expect_described(ec)
    ec.add_response("describe_cache_clusters", MEMBER, {"CacheClusterId": "sessions-001"})
    ec.add_client_error("list_tags_for_resource", *NOT_FOUND, http_status_code=404)
    result = run(args(), capsys, check_mode=True)
    assert "failed" not in result and result["action"] == "none"
    assert "tags" in result["unverified"] and "tags" not in result["replication_group"]


def test_info_lists_each_group_with_its_tags_and_skips_tags_aws_will_not_list(aws, capsys):
    ec = aws["elasticache"]
    deleting = group("deleting", ReplicationGroupId="old", ARN=ARN.replace(":sessions", ":old"))
    ec.add_response("describe_replication_groups",
                    {"ReplicationGroups": group()["ReplicationGroups"] + deleting["ReplicationGroups"]}, {})
    expect_tags(ec, {"TagList": [{"Key": "app", "Value": "sessionshift"},
                                 {"Key": "CostCenter", "Value": "7"}]})
    ec.add_client_error("list_tags_for_resource", "InvalidReplicationGroupState", "old is deleting",
                        http_status_code=400,
                        expected_params={"ResourceName": deleting["ReplicationGroups"][0]["ARN"]})
    result = run({"region": "ap-northeast-1"}, capsys, main=info_module.main)
    assert "failed" not in result
    listed, old = result["replication_groups"]
    assert listed["tags"] == {"app": "sessionshift", "CostCenter": "7"}  # keys as tagged, not snake_cased
    assert old["status"] == "deleting" and "tags" not in old


def test_info_fails_on_other_tag_errors_naming_the_group(aws, capsys):
    ec = aws["elasticache"]
    expect_described(ec)
    ec.add_client_error("list_tags_for_resource", "AccessDenied", "not allowed", http_status_code=403)
    result = run({"replication_group_id": "sessions", "region": "ap-northeast-1"}, capsys,
                 main=info_module.main)
    assert result["failed"] and result["msg"].startswith("cannot list the tags of replication group sessions")
