"""The replication group decisions: desired vs described, without AWS."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.sessionshift.migration.plugins.module_utils.elasticache_plan import (
    PlanError,
    create_request,
    describe,
    plan_changes,
    validate,
)

TOKEN = "Abcdefgh-12345678!#$%"
KMS_ARN = "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def desired(**overrides):
    state = dict(
        replication_group_id="sessions",
        description="sessions",
        engine="valkey",
        engine_version="8.0",
        node_type="cache.t4g.small",
        cluster_mode="disabled",
        num_node_groups=None,
        replicas_per_node_group=1,
        automatic_failover=True,
        multi_az=True,
        port=6379,
        cache_subnet_group="sessions",
        security_group_ids=["sg-2", "sg-1"],
        cache_parameter_group="sessions-valkey8",
        maintenance_window="sun:17:00-sun:18:00",
        snapshot_window="15:00-16:00",
        snapshot_retention_limit=7,
        transit_encryption=True,
        transit_encryption_mode="required",
        at_rest_encryption=True,
        kms_key_id=KMS_ARN,
        auth_token=TOKEN,
        update_auth_token=False,
        auth_token_update_strategy="ROTATE",
        user_group_ids=None,
        log_delivery=[
            {
                "log_type": "slow-log",
                "destination_type": "cloudwatch-logs",
                "destination": "/ec/slow",
                "log_format": "json",
            },
            {
                "log_type": "engine-log",
                "destination_type": "cloudwatch-logs",
                "destination": "/ec/engine",
                "log_format": "json",
            },
        ],
        apply_immediately=True,
        tags={"app": "sessionshift"},
        purge_tags=True,
    )
    state.update(overrides)
    return state


def aws_group(**overrides):
    """A DescribeReplicationGroups entry as AWS returns it for desired() (cluster mode off)."""
    group = {
        "ReplicationGroupId": "sessions",
        "Description": "sessions",
        "Status": "available",
        "MemberClusters": ["sessions-001", "sessions-002"],
        "NodeGroups": [
            {
                "NodeGroupId": "0001",
                "Status": "available",
                "PrimaryEndpoint": {"Address": "master.sessions.x.apne1.cache.amazonaws.com", "Port": 6379},
                "ReaderEndpoint": {"Address": "replica.sessions.x.apne1.cache.amazonaws.com", "Port": 6379},
                "NodeGroupMembers": [
                    {"CacheClusterId": "sessions-001", "CurrentRole": "primary"},
                    {"CacheClusterId": "sessions-002", "CurrentRole": "replica"},
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
        "ARN": "arn:aws:elasticache:ap-northeast-1:123456789012:replicationgroup:sessions",
        "UserGroupIds": [],
        "LogDeliveryConfigurations": [
            {
                "LogType": "slow-log",
                "DestinationType": "cloudwatch-logs",
                "DestinationDetails": {"CloudWatchLogsDetails": {"LogGroup": "/ec/slow"}},
                "LogFormat": "json",
                "Status": "active",
            },
            {
                "LogType": "engine-log",
                "DestinationType": "cloudwatch-logs",
                "DestinationDetails": {"CloudWatchLogsDetails": {"LogGroup": "/ec/engine"}},
                "LogFormat": "json",
                "Status": "active",
            },
        ],
        "ClusterMode": "disabled",
        "Engine": "valkey",
    }
    group.update(overrides)
    return group


def aws_member(**overrides):
    member = {
        "CacheClusterId": "sessions-001",
        "EngineVersion": "8.0.1",
        "CacheParameterGroup": {"CacheParameterGroupName": "sessions-valkey8"},
        "SecurityGroups": [{"SecurityGroupId": "sg-1"}, {"SecurityGroupId": "sg-2"}],
        "PreferredMaintenanceWindow": "sun:17:00-sun:18:00",
        "CacheSubnetGroupName": "sessions",
    }
    member.update(overrides)
    return member


TAGS = {"app": "sessionshift"}


def described(group=None, member=None, tags=TAGS):
    return describe(group or aws_group(), aws_member() if member is None else member, tags)


def modify_params(plan):
    return [step["params"] for step in plan.steps if step["operation"] == "modify_replication_group"]


def test_described_state_matching_the_desired_one_needs_nothing():
    plan = plan_changes(desired(), described())
    assert (plan.action, plan.steps, plan.changes, plan.unverified) == ("none", [], {}, [])


def test_a_missing_group_is_created_with_every_option_and_one_shard_for_cluster_mode_off():
    plan = plan_changes(desired(), None)
    assert plan.action == "create"
    request = plan.steps[0]["params"]
    assert request["NumNodeGroups"] == 1 and request["ReplicasPerNodeGroup"] == 1
    assert request["MultiAZEnabled"] and request["AutomaticFailoverEnabled"]
    assert request["TransitEncryptionMode"] == "required" and request["AuthToken"] == TOKEN
    assert request["KmsKeyId"] == KMS_ARN and request["SecurityGroupIds"] == ["sg-1", "sg-2"]
    assert request["LogDeliveryConfigurations"][0] == {
        "LogType": "engine-log",
        "DestinationType": "cloudwatch-logs",
        "LogFormat": "json",
        "DestinationDetails": {"CloudWatchLogsDetails": {"LogGroup": "/ec/engine"}},
    }
    assert "auth_token" not in plan.changes and plan.changes["auth_token_enabled"]["after"] is True


def test_cluster_mode_on_sends_its_shard_count():
    request = create_request(desired(cluster_mode="enabled", num_node_groups=3))
    assert (request["ClusterMode"], request["NumNodeGroups"], request["ReplicasPerNodeGroup"]) == (
        "enabled",
        3,
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_token": "short"}, "16-128 characters"),
        ({"auth_token": "x" * 129}, "16-128 characters"),
        ({"auth_token": "has a space in it 123"}, "space"),
        ({"auth_token": "has@at-sign-0123456789"}, "'@'"),
        ({"auth_token": 'has"quote-0123456789'}, "'\"'"),
        ({"auth_token": "has/slash-0123456789"}, "'/'"),
        ({"auth_token": "tab\there-0123456789"}, "0x9"),
        ({"auth_token": "caf\u00e9-0123456789abc"}, "é"),
        (
            {"transit_encryption": False, "transit_encryption_mode": None},
            "auth_token needs transit_encryption",
        ),
        ({"automatic_failover": False}, "multi_az: true needs automatic_failover"),
        ({"replicas_per_node_group": 0}, "multi_az: true needs replicas_per_node_group >= 1"),
        ({"multi_az": False, "replicas_per_node_group": 0}, "automatic_failover: true needs replicas"),
        ({"user_group_ids": ["ug"]}, "either auth_token or user_group_ids"),
        ({"auth_token": None, "update_auth_token": True}, "update_auth_token: true needs the new auth_token"),
        ({"at_rest_encryption": False}, "kms_key_id needs at_rest_encryption"),
        (
            {"cluster_mode": "enabled", "automatic_failover": False, "multi_az": False},
            "needs automatic_failover",
        ),
        ({"num_node_groups": 2}, "exactly one shard"),
    ],
)
def test_invalid_desired_states_are_refused_before_any_call(overrides, message):
    with pytest.raises(PlanError, match=None) as error:
        validate(desired(**overrides))
    assert message in str(error.value)


def test_a_valid_token_at_the_limits_passes():
    validate(desired(auth_token="a" * 16))
    validate(desired(auth_token="~!#$%^&*()_+-=[]{}|;:',.<>?`" + "a" * 100))


@pytest.mark.parametrize(
    ("group", "member", "name", "reason"),
    [
        (aws_group(AtRestEncryptionEnabled=False, KmsKeyId=None), None, "at_rest_encryption", "at-rest"),
        (aws_group(KmsKeyId="arn:aws:kms:ap-northeast-1:123456789012:key/other"), None, "kms_key_id", "KMS"),
        (
            aws_group(
                NodeGroups=[
                    {**aws_group()["NodeGroups"][0], "PrimaryEndpoint": {"Address": "a", "Port": 6380}}
                ]
            ),
            None,
            "port",
            "port",
        ),
        (None, aws_member(CacheSubnetGroupName="old"), "cache_subnet_group", "subnet group"),
        (aws_group(ClusterMode="enabled", ClusterEnabled=True), None, "cluster_mode", "cluster mode"),
        (aws_group(Engine="valkey"), aws_member(EngineVersion="8.1.0"), "engine_version", "downgrade"),
    ],
)
def test_changes_aws_cannot_make_in_place_are_refused(group, member, name, reason):
    plan = plan_changes(desired(), described(group, member))
    assert plan.action == "replace" and plan.steps == []
    assert name in plan.changes
    assert any(reason in text for text in plan.replace_reasons)


def test_valkey_to_redis_is_a_downgrade():
    plan = plan_changes(desired(engine="redis", engine_version="7.1"), described())
    assert plan.action == "replace" and "downgrade" in plan.replace_reasons[0]


def test_allow_replacement_deletes_then_creates():
    plan = plan_changes(desired(port=6380), described(), allow_replacement=True)
    assert [step["operation"] for step in plan.steps] == [
        "delete_replication_group",
        "create_replication_group",
    ]
    assert plan.steps[1]["params"]["Port"] == 6380


def test_a_bare_kms_key_id_matches_the_described_arn():
    plan = plan_changes(desired(kms_key_id="1234abcd-12ab-34cd-56ef-1234567890ab"), described())
    assert plan.action == "none"


def test_settings_change_in_place_in_one_modify_call():
    plan = plan_changes(
        desired(
            node_type="cache.r7g.large",
            snapshot_retention_limit=1,
            description="new",
            security_group_ids=["sg-3"],
            cache_parameter_group="pg2",
            maintenance_window="mon:01:00-mon:02:00",
            snapshot_window="02:00-03:00",
            engine_version="8.1",
        ),
        described(),
    )
    assert plan.action == "modify"
    [params] = modify_params(plan)
    assert params == {
        "ReplicationGroupId": "sessions",
        "ApplyImmediately": True,
        "CacheNodeType": "cache.r7g.large",
        "SnapshotRetentionLimit": 1,
        "ReplicationGroupDescription": "new",
        "SecurityGroupIds": ["sg-3"],
        "CacheParameterGroupName": "pg2",
        "PreferredMaintenanceWindow": "mon:01:00-mon:02:00",
        "SnapshotWindow": "02:00-03:00",
        "EngineVersion": "8.1",
    }


def test_multi_az_and_failover_are_switched_on_in_place():
    group = aws_group(MultiAZ="disabled", AutomaticFailover="disabled")
    [params] = modify_params(plan_changes(desired(), described(group)))
    assert params["MultiAZEnabled"] is True and params["AutomaticFailoverEnabled"] is True


def test_redis_to_valkey_is_an_in_place_upgrade_with_the_version():
    [params] = modify_params(
        plan_changes(desired(), described(aws_group(Engine="redis"), aws_member(EngineVersion="7.1.0")))
    )
    assert params["Engine"] == "valkey" and params["EngineVersion"] == "8.0"


def test_log_delivery_changes_enable_and_disable_each_log():
    group = aws_group(LogDeliveryConfigurations=[aws_group()["LogDeliveryConfigurations"][0]])
    [params] = modify_params(
        plan_changes(
            desired(
                log_delivery=[
                    {
                        "log_type": "engine-log",
                        "destination_type": "cloudwatch-logs",
                        "destination": "/ec/engine",
                        "log_format": "text",
                    }
                ]
            ),
            described(group),
        )
    )
    assert params["LogDeliveryConfigurations"] == [
        {
            "LogType": "engine-log",
            "DestinationType": "cloudwatch-logs",
            "LogFormat": "text",
            "Enabled": True,
            "DestinationDetails": {"CloudWatchLogsDetails": {"LogGroup": "/ec/engine"}},
        },
        {"LogType": "slow-log", "Enabled": False},
    ]


def test_tls_on_an_existing_group_goes_preferred_then_required_then_auth():
    group = aws_group(TransitEncryptionEnabled=False, TransitEncryptionMode=None, AuthTokenEnabled=False)
    plan = plan_changes(desired(), described(group))
    params = modify_params(plan)
    assert [
        {k: v for k, v in p.items() if k not in ("ReplicationGroupId", "ApplyImmediately")} for p in params
    ] == [
        {"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"},
        {"TransitEncryptionMode": "required"},
        {"AuthToken": TOKEN, "AuthTokenUpdateStrategy": "ROTATE"},
    ]
    assert plan.changes["transit_encryption"] == {"before": "disabled", "after": "required"}


def test_preferred_to_required_is_one_step():
    plan = plan_changes(desired(), described(aws_group(TransitEncryptionMode="preferred")))
    assert modify_params(plan)[0]["TransitEncryptionMode"] == "required" and len(plan.steps) == 1


def test_turning_tls_off_goes_through_preferred():
    plan = plan_changes(
        desired(transit_encryption=False, transit_encryption_mode=None, auth_token=None), described()
    )
    assert [
        p.get("TransitEncryptionMode", p.get("TransitEncryptionEnabled")) for p in modify_params(plan)
    ] == ["preferred", False]


def test_an_enabled_token_is_never_resent_unless_rotation_is_asked():
    assert plan_changes(desired(auth_token="another-token-0123456789"), described()).action == "none"
    plan = plan_changes(desired(update_auth_token=True, auth_token_update_strategy="SET"), described())
    [params] = modify_params(plan)
    assert params["AuthTokenUpdateStrategy"] == "SET" and params["AuthToken"] == TOKEN
    assert TOKEN not in repr(plan.changes)


def test_delete_strategy_removes_auth():
    plan = plan_changes(desired(auth_token=None, auth_token_update_strategy="DELETE"), described())
    assert modify_params(plan)[0]["AuthTokenUpdateStrategy"] == "DELETE"


def test_user_groups_are_added_removed_or_dropped():
    group = aws_group(AuthTokenEnabled=False, UserGroupIds=["old", "keep"])
    [params] = modify_params(
        plan_changes(desired(auth_token=None, user_group_ids=["keep", "new"]), described(group))
    )
    assert params["UserGroupIdsToAdd"] == ["new"] and params["UserGroupIdsToRemove"] == ["old"]
    [params] = modify_params(plan_changes(desired(auth_token=None, user_group_ids=[]), described(group)))
    assert params["RemoveUserGroups"] is True


def test_replica_count_changes_use_the_replica_calls():
    plan = plan_changes(desired(replicas_per_node_group=2), described())
    assert (
        plan.steps[0]["operation"] == "increase_replica_count"
        and plan.steps[0]["params"]["NewReplicaCount"] == 2
    )
    group = aws_group(MemberClusters=["a", "b", "c"])
    assert plan_changes(desired(), described(group)).steps[0]["operation"] == "decrease_replica_count"


def test_tags_are_added_and_purged():
    plan = plan_changes(
        desired(tags={"app": "x", "team": "web"}), described(tags={**TAGS, "old": "1"})
    )
    operations = {step["operation"]: step["params"] for step in plan.steps}
    assert operations["add_tags_to_resource"]["Tags"] == [
        {"Key": "app", "Value": "x"},
        {"Key": "team", "Value": "web"},
    ]
    assert operations["remove_tags_from_resource"]["TagKeys"] == ["old"]
    keep = plan_changes(desired(purge_tags=False), described(tags={**TAGS, "old": "1"}))
    assert keep.action == "none"


def test_tags_aws_would_not_list_are_reported_not_changed():
    plan = plan_changes(desired(tags={"app": "x"}), described(tags=None))
    assert plan.action == "none" and "tags" in plan.unverified


def test_fields_aws_did_not_describe_are_reported_not_guessed():
    plan = plan_changes(desired(), describe(aws_group(), None, TAGS))
    assert plan.action == "none"
    assert set(plan.unverified) == {
        "engine_version",
        "cache_parameter_group",
        "security_group_ids",
        "maintenance_window",
        "cache_subnet_group",
    }


def test_options_left_unset_are_not_managed():
    unmanaged = {name: None for name in desired() if name not in ("replication_group_id", "cluster_mode")}
    plan = plan_changes(
        {**desired(), **unmanaged}, described(aws_group(SnapshotRetentionLimit=0, MultiAZ="disabled"))
    )
    assert plan.action == "none"


def test_cluster_mode_on_is_described_per_shard():
    group = aws_group(
        ClusterEnabled=True,
        ClusterMode="enabled",
        ConfigurationEndpoint={"Address": "cfg", "Port": 6379},
        MemberClusters=["s-0001-001", "s-0001-002", "s-0002-001", "s-0002-002"],
        NodeGroups=[
            {"NodeGroupId": "0001", "NodeGroupMembers": [{}, {}]},
            {"NodeGroupId": "0002", "NodeGroupMembers": [{}, {}]},
        ],
    )
    state = described(group)
    assert (state["num_node_groups"], state["replicas_per_node_group"], state["port"]) == (2, 1, 6379)
    assert plan_changes(desired(cluster_mode="enabled", num_node_groups=2), state).action == "none"
    assert (
        "num_node_groups" in plan_changes(desired(cluster_mode="enabled", num_node_groups=3), state).changes
    )


def test_the_desired_state_is_not_mutated():
    state = desired()
    before = copy.deepcopy(state)
    plan_changes(state, described(aws_group(TransitEncryptionEnabled=False, AuthTokenEnabled=False)))
    assert state == before


TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:sessionshift-alarms"


def test_the_notification_topic_is_sent_at_creation_and_changed_in_place():
    create = plan_changes(desired(notification_topic_arn=TOPIC), None)
    assert create.steps[0]["params"]["NotificationTopicArn"] == TOPIC
    member = aws_member(NotificationConfiguration={"TopicArn": TOPIC, "TopicStatus": "active"})
    assert plan_changes(desired(notification_topic_arn=TOPIC), described(member=member)).action == "none"
    other = TOPIC.replace("alarms", "ops")
    change = plan_changes(desired(notification_topic_arn=other), described(member=member))
    assert modify_params(change) == [{"ReplicationGroupId": "sessions", "ApplyImmediately": True,
                                      "NotificationTopicArn": other}]
    # a member AWS did not describe: reported, not guessed
    unknown = plan_changes(desired(notification_topic_arn=TOPIC), described(member={}))
    assert unknown.action == "none" and "notification_topic_arn" in unknown.unverified


def test_a_replacement_takes_a_final_snapshot_when_one_is_named():
    plan = plan_changes(desired(port=6380), described(), allow_replacement=True,
                        final_snapshot="sessions-final-20261130")
    assert plan.steps[0]["params"] == {"ReplicationGroupId": "sessions",
                                       "FinalSnapshotIdentifier": "sessions-final-20261130"}
    assert "final snapshot sessions-final-20261130" in plan.steps[0]["why"]
    bare = plan_changes(desired(port=6380), described(), allow_replacement=True)
    assert bare.steps[0]["params"] == {"ReplicationGroupId": "sessions"}
