"""Check, with boto3 against the moto server, everything phase 1's infra plays must have built.

Usage: verify_aws.py ENDPOINT_URL. Prints one line per check; exits 1 listing every failure.
"""

from __future__ import annotations

import json
import sys

import boto3

GROUP_ID = "sessionshift-moto"
PREFIX = "sessionshift"
NODE_METRICS = {
    "EngineCPUUtilization",
    "CPUUtilization",
    "DatabaseMemoryUsagePercentage",
    "FreeableMemory",
    "SwapUsage",
    "CurrConnections",
    "ReplicationLag",
    "Evictions",
    "NetworkBandwidthInAllowanceExceeded",
    "NetworkBandwidthOutAllowanceExceeded",
    "NetworkPacketsPerSecondAllowanceExceeded",
    "NetworkConntrackAllowanceExceeded",
    "SuccessfulReadRequestLatency",
    "SuccessfulWriteRequestLatency",
}
APP_METRICS = {"SessionWriteErrors", "SessionFallbackReads", "ShadowMismatches", "JournalDepth", "Http5xx"}
APP_HOSTS = ["app1", "app2"]  # inventories/aws-moto: cloudwatch_alarms_app_hosts
TOKEN_FORBIDDEN = set('@"/ ')


def main(endpoint: str) -> int:
    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "ap-northeast-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    client = lambda name: boto3.client(name, **kwargs)  # noqa: E731
    failures, checks = [], []

    def check(name, ok, detail=""):
        (checks if ok else failures).append(f"{name}{': ' + detail if detail else ''}")

    group = client("elasticache").describe_replication_groups(ReplicationGroupId=GROUP_ID)[
        "ReplicationGroups"
    ][0]
    members = group["MemberClusters"]
    check("two member nodes (primary + replica)", len(members) == 2, str(members))
    check("Multi-AZ", group["MultiAZ"] == "enabled")
    check("automatic failover", group["AutomaticFailover"] == "enabled")
    check(
        "TLS required", group["TransitEncryptionEnabled"] and group.get("TransitEncryptionMode") == "required"
    )
    check(
        "at-rest encryption with a KMS key",
        group["AtRestEncryptionEnabled"] and group.get("KmsKeyId", "").startswith("arn:aws:kms:"),
    )
    check("AUTH enabled", group["AuthTokenEnabled"] is True)
    check("engine redis (the role's default, as in production)", group["Engine"] == "redis", group["Engine"])
    logs = {
        entry["LogType"]: entry["DestinationDetails"]["CloudWatchLogsDetails"]["LogGroup"]
        for entry in group["LogDeliveryConfigurations"]
        if entry["DestinationType"] == "cloudwatch-logs"
    }
    check("slow-log and engine-log to CloudWatch Logs", set(logs) == {"slow-log", "engine-log"}, str(logs))

    groups = {g["logGroupName"]: g for g in client("logs").describe_log_groups()["logGroups"]}
    for log_group in logs.values():
        check(
            f"log group {log_group} with 30 days retention",
            groups.get(log_group, {}).get("retentionInDays") == 30,
        )

    secret = client("secretsmanager").get_secret_value(SecretId=f"{GROUP_ID}/redis-auth-token")[
        "SecretString"
    ]
    check(
        "AUTH token in Secrets Manager follows the AUTH rules (not printed)",
        16 <= len(secret) <= 128
        and secret.isascii()
        and secret.isprintable()
        and not TOKEN_FORBIDDEN & set(secret),
    )

    ec2 = client("ec2")
    [redis_sg] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{GROUP_ID}-redis"]}]
    )["SecurityGroups"]
    [app_sg] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["sessionshift-app"]}])[
        "SecurityGroups"
    ]
    rules = [
        (p["FromPort"], p["ToPort"], [pair["GroupId"] for pair in p["UserIdGroupPairs"]], p["IpRanges"])
        for p in redis_sg["IpPermissions"]
    ]
    check(
        "Redis port open to the app hosts' security group only",
        rules == [(6379, 6379, [app_sg["GroupId"]], [])],
        str(rules),
    )

    iam = client("iam")
    secret_arn = client("secretsmanager").describe_secret(SecretId=f"{GROUP_ID}/redis-auth-token")["ARN"]
    policies = [
        p
        for p in iam.list_policies(Scope="Local")["Policies"]
        if p["PolicyName"] == f"{GROUP_ID}-read-redis-auth-token"
    ]
    document = (
        iam.get_policy_version(PolicyArn=policies[0]["Arn"], VersionId=policies[0]["DefaultVersionId"])[
            "PolicyVersion"
        ]["Document"]
        if policies
        else {"Statement": []}
    )
    check(
        "IAM policy lets the app hosts read exactly that secret",
        any(
            s["Resource"] == secret_arn and "secretsmanager:GetSecretValue" in s["Action"]
            for s in document["Statement"]
        ),
    )

    topics = [
        t["TopicArn"]
        for t in client("sns").list_topics()["Topics"]
        if t["TopicArn"].endswith(":sessionshift-alarms")
    ]
    check("SNS topic", len(topics) == 1)
    topic = topics[0] if topics else None
    subscriptions = (
        client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] if topic else []
    )
    check(
        "email subscription",
        [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "ops@example.com")],
    )

    alarms = {a["AlarmName"]: a for a in client("cloudwatch").describe_alarms(MaxRecords=100)["MetricAlarms"]}
    # (what is watched, metric, namespace, dimension): every node's engine metrics, every app host's own
    watched = [(node, metric, "AWS/ElastiCache", "CacheClusterId")
               for node in members for metric in sorted(NODE_METRICS)]
    watched += [(host, metric, "Sessionshift", "host")
                for host in APP_HOSTS for metric in sorted(APP_METRICS)]
    for subject, metric, namespace, dimension in watched:
        alarm = alarms.get(f"{PREFIX}-{subject}-{metric}")
        check(
            f"alarm {metric} on {subject}",
            alarm is not None
            and alarm["Namespace"] == namespace
            and alarm["MetricName"] == metric
            and alarm["Dimensions"] == [{"Name": dimension, "Value": subject}]
            and alarm["AlarmActions"] == [topic],
        )
    thresholds = {name.rsplit("-", 1)[-1]: a["Threshold"] for name, a in alarms.items() if members[0] in name}
    check(
        "thresholds from AWS guidance",
        thresholds.get("EngineCPUUtilization") == 90
        and thresholds.get("DatabaseMemoryUsagePercentage") == 80
        and thresholds.get("SwapUsage") == 52428800
        and thresholds.get("Evictions") == 0
        and thresholds.get("CPUUtilization") == 45
        # cache.t4g.small (1.37 GiB): 10 % free
        and thresholds.get("FreeableMemory") == int(1.37 * 1073741824 * 10 / 100),
        str(thresholds),
    )
    check(
        "no other alarms",
        len(alarms) == len(members) * len(NODE_METRICS) + len(APP_HOSTS) * len(APP_METRICS),
        str(len(alarms)),
    )

    body = json.loads(
        client("cloudwatch").get_dashboard(DashboardName="sessionshift-sessions")["DashboardBody"]
    )
    shown = {
        (m[1], m[3] if len(m) > 3 else None) for w in body["widgets"] for m in w["properties"]["metrics"]
    }
    expected = {(metric, node) for metric in NODE_METRICS for node in members} | {
        (m, host) for m in APP_METRICS for host in APP_HOSTS
    }
    check("dashboard shows every alarmed metric", shown == expected, str(sorted(expected - shown)))

    for line in checks:
        print(f"ok   {line}")
    for line in failures:
        print(f"FAIL {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
