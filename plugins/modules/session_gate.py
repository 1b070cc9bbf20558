#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_gate
short_description: Check whether the session migration may move into a phase now
description:
  - Evaluates one pre-flight gate of the sessionshift rollout on an app host and returns whether it
    passed and, if not, reasons an operator can act on.
  - The gates are those of the phase model, plus the maintenance window in which flips may happen.
  - Read-only; it never changes anything, so it runs the same in check mode.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  gate:
    description:
      - C(maintenance_window) checks the local time against O(window_start)-O(window_end) in O(window_timezone).
      - C(dual_write) checks that Redis (O(redis), required with this gate) answers over TLS with AUTH, that
        no alarm in O(alarms_in_alarm) fires, and that a Redis with an append-only file would keep the logouts
        it acknowledged across a restart (its default user keeps C(+@all); see docs/architecture.md).
      - C(redis_read) checks the backfill completed and the last validation met O(threshold), both in the
        Redis generation the host reads, on enough evidence (O(min_compared), O(min_comparable_percent)),
        with no stale or orphaned copy, and that every host in O(fleet_generations) reads one generation.
      - C(redis_only) checks the fallback-read rate from O(fallback_reads) / O(total_reads), over at least
        O(min_requests) requests.
      - C(redis) checks that O(session_lifetime) seconds have passed since the host entered redis_only.
    type: str
    required: true
    choices: [maintenance_window, dual_write, redis_read, redis_only, redis]
  state_dir:
    description: The host's sessionshift state directory (phase, migration and validation records).
    type: path
    default: /var/lib/sessionshift
  window_start:
    description: Start of the maintenance window, V(HH:MM) local time.
    type: str
    default: "02:00"
  window_end:
    description: End of the maintenance window, V(HH:MM) local time; may be earlier than the start (wraps midnight).
    type: str
    default: "06:00"
  window_timezone:
    description: IANA time zone of the window.
    type: str
    default: Asia/Tokyo
  ignore_window:
    description: Pass the maintenance window gate outside the window (an explicit operator override).
    type: bool
    default: false
  redis:
    # The suboptions come from the sessionshift.migration.sessionshift fragment; only this gate
    # makes the option optional.
    description: How to reach Redis / ElastiCache; required with O(gate=dual_write), the only gate that talks to Redis.
    type: dict
    required: false
  alarms_in_alarm:
    description: Names of CloudWatch alarms currently in ALARM (from M(amazon.aws.cloudwatch_metric_alarm_info)).
    type: list
    elements: str
    default: []
  threshold:
    description: Minimum validation consistency, in percent of comparable sessions.
    type: float
    default: 100.0
  min_compared:
    description: The fewest sessions the validation must have compared; below it the C(redis_read) gate refuses.
    type: int
    default: 1
  min_comparable_percent:
    description: The lowest share of live files, in percent, that must have been comparable (not corrupt).
    type: float
    default: 99.0
  fleet_generations:
    description:
      - The Redis generation every app host reads (each host's C(phase.json)); the C(redis_read) gate
        refuses when they differ. Empty checks this host only.
    type: list
    elements: int
    default: []
  min_requests:
    description: The fewest session requests in the watch window for the C(redis_only) gate to judge the rate.
    type: int
    default: 100
  fallback_reads:
    description: Reads that fell back to files during the watch window.
    type: float
    default: 0
  total_reads:
    description: All session reads during the watch window.
    type: float
    default: 0
  max_fallback_rate:
    description: Highest fallback-read rate (fraction) that still lets phase 4 start.
    type: float
    default: 0.001
  session_lifetime:
    description: The longest session lifetime in seconds (the app's PERMANENT_SESSION_LIFETIME).
    type: int
    default: 2678400
extends_documentation_fragment: sessionshift.migration.attributes.no_diff,sessionshift.migration.sessionshift
"""

EXAMPLES = r"""
- name: Refuse to flip outside the maintenance window
  sessionshift.migration.session_gate:
    gate: maintenance_window
    ignore_window: "{{ sessionshift_ignore_maintenance_window | bool }}"
  register: window

- name: Stop with the reasons when the gate is closed
  ansible.builtin.assert:
    that: window.passed
    fail_msg: "{{ window.reasons | join('; ') }}"

- name: Validation must be at 100 % before reads move to Redis
  sessionshift.migration.session_gate:
    gate: redis_read
    state_dir: /var/lib/sessionshift
    threshold: 100
  register: gate
"""

RETURN = r"""
passed:
  description: Whether the gate is open.
  returned: always
  type: bool
  sample: false
reasons:
  description: Why the gate is closed, each with what to do about it.
  returned: always
  type: list
  elements: str
  sample: ["validation consistency 99.800% is below the threshold 100.0%; ..."]
facts:
  description: The figures the decision was made on.
  returned: always
  type: dict
  sample: {"consistency_percent": 99.8, "threshold": 100.0}
gate:
  description: The gate that was checked.
  returned: always
  type: str
  sample: redis_read
"""

import datetime

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    REDIS_OPTIONS,
    STATE_DIR_OPTION,
    SessionshiftModule,
)


def main():
    module = SessionshiftModule(
        "session_gate", required_if=[("gate", "dual_write", ("redis",))], argument_spec=dict(
            gate=dict(type="str", required=True,
                      choices=["maintenance_window", "dual_write", "redis_read", "redis_only", "redis"]),
            state_dir=STATE_DIR_OPTION,
            window_start=dict(type="str", default="02:00"),
            window_end=dict(type="str", default="06:00"),
            window_timezone=dict(type="str", default="Asia/Tokyo"),
            ignore_window=dict(type="bool", default=False),
            redis=dict(type="dict", options=REDIS_OPTIONS),
            alarms_in_alarm=dict(type="list", elements="str", default=[]),
            threshold=dict(type="float", default=100.0),
            min_compared=dict(type="int", default=1),
            min_comparable_percent=dict(type="float", default=99.0),
            fleet_generations=dict(type="list", elements="int", default=[]),
            min_requests=dict(type="int", default=100),
            fallback_reads=dict(type="float", default=0),
            total_reads=dict(type="float", default=0),
            max_fallback_rate=dict(type="float", default=0.001),
            session_lifetime=dict(type="int", default=2678400),
        ),
    )
    from sessionshift.gates import evaluate  # checked by SessionshiftModule
    with module.failing(ValueError, prefix=f"gate {module.params['gate']}"):
        result = evaluate(module.params, now=datetime.datetime.now(datetime.UTC))
    module.exit_json(changed=False, gate=module.params["gate"], **result.as_dict())


if __name__ == "__main__":
    main()
