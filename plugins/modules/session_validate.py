#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_validate
short_description: Check that Redis gives the app the same sessions as the session files
description:
  - Compares every live file session (or a stable O(sample_percent) sample) with what the app reads from its
    Redis value, type for type. A type that changed (a tuple read back as a list, a UUID as a string) is
    counted as C(type_changed) and named by file, key path and from/to type; it is never consistent, and any
    fails the module whatever O(threshold) says.
  - Differences seen under live traffic are re-checked after O(recheck_delay) seconds; only those that persist
    count.
  - Fails when the consistency of comparable sessions (consistent, missing in Redis or different; expired,
    corrupt and logged-out leftovers are not comparable) is below O(threshold).
  - Writes the result to O(state_dir)C(/validation.json), which the phase-3 gate reads, unless in check mode.
  - Reports session FILE NAMES only, never session contents.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  sample_percent:
    description: Validate this percentage of the sessions (a stable sample chosen by file name); V(100) = all.
    type: float
    default: 100.0
  threshold:
    description: Minimum percentage of comparable sessions that must be consistent; below it the task fails.
    type: float
    default: 100.0
  recheck_delay:
    description: Seconds to wait before re-checking each difference (live traffic heals transient ones).
    type: float
    default: 2.0
  count_orphans:
    description:
      - Also count orphaned copies, session keys of the host's generation with no live file in O(session_dir)
        (re-checked after O(recheck_delay)); any fails the validation.
      - Only true when this directory holds every host's sessions (one app host, or a shared directory);
        otherwise every other host's session would count. Not counted, C(counts.orphaned) is null and
        RV(orphaned_not_counted) says why. There is no per-host count because a key names its session's
        file and no host, and from phase 3 on any host writes any user's key.
    type: bool
    default: false
  max_examples:
    description: File names listed per kind of problem.
    type: int
    default: 20
  workers:
    description: Worker processes reading and comparing files; V(0) uses the CPU count (at most 8).
    type: int
    default: 0
attributes:
  check_mode:
    details: The comparison is read-only and runs in check mode too; only C(validation.json) is not written.
notes:
  - C(changed) is always false; the module never modifies sessions. C(validation.json) is a record, not a change.
  - Works under C(async)/C(poll).
extends_documentation_fragment: sessionshift.migration.attributes.no_diff,sessionshift.migration.sessionshift.sessions
"""

EXAMPLES = r"""
- name: Validate the backfill before reads move to Redis
  sessionshift.migration.session_validate:
    redis: "{{ sessionshift_redis }}"
    session_dir: /var/lib/app/sessions
    threshold: 100
  async: 3600
  poll: 15

- name: Spot-check 5 % of a very large fleet without failing the play
  sessionshift.migration.session_validate:
    redis: "{{ sessionshift_redis }}"
    session_dir: /var/lib/app/sessions
    sample_percent: 5
    threshold: 0
  register: spot
"""

RETURN = r"""
passed:
  description: Whether consistency reached O(threshold).
  returned: always
  type: bool
consistency_percent:
  description: Consistent sessions as a percentage of comparable ones (100 when there are none).
  returned: always
  type: float
  sample: 99.9985
comparable:
  description: Sessions that could be compared (consistent + missing + different + type_changed).
  returned: always
  type: int
counts:
  description:
    - C(checked) files, C(consistent), C(missing) in Redis, C(different), C(type_changed), C(expired), C(corrupt),
      C(tombstoned) (logged out, the file is a leftover), C(vanished), C(healed) (differences gone on re-check),
      C(unverified) (too many differences to re-check), C(foreign), C(skipped).
  returned: always
  type: dict
orphaned_not_counted:
  description:
    - Why C(counts.orphaned) is null (O(count_orphans) false) - a Redis key names no host, so with a session
      directory per host a key with no file here may be another host's live session; null when counted.
  returned: always
  type: str
examples:
  description:
    - File names (never contents) of missing and different sessions, corrupt files with the reason, and
      sessions whose types changed with the key paths and types (a list of path, from and to per file).
  returned: always
  type: dict
  sample: {missing: [3f2a...], different: [], corrupt: [{file: 9c1d..., reason: empty file}]}
type_changes:
  description: Sessions per kind of type change (C(tuple -> list)...); any fails the module.
  returned: always
  type: dict
  sample: {"tuple -> list": 12}
recorded:
  description: Path of the C(validation.json) written, or null in check mode.
  returned: always
  type: str
"""

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SessionshiftModule,
)


def main():
    module = SessionshiftModule(
        "session_validate", redis=True, session=True, decode_budget=True, profile=("serializer",),
        argument_spec=dict(
            sample_percent=dict(type="float", default=100.0),
            threshold=dict(type="float", default=100.0),
            recheck_delay=dict(type="float", default=2.0),
            max_examples=dict(type="int", default=20),
            workers=dict(type="int", default=0),
            count_orphans=dict(type="bool", default=False),
        ),
    )
    from sessionshift.validate import ValidateConfig, record, validate  # checked by SessionshiftModule
    params = module.params
    config = ValidateConfig(
        session_dir=params["session_dir"], layout=module.key_layout(), serializer=params["serializer"],
        pickle_protocol=params["pickle_protocol"],
        sample_percent=params["sample_percent"], threshold=params["threshold"],
        recheck_delay=params["recheck_delay"], max_examples=params["max_examples"],
        workers=params["workers"], count_orphans=params["count_orphans"])
    settings = module.redis_settings()
    with module.failing(ValueError, OSError):
        config.check()
    with module.redis_client(settings, ValueError, OSError) as client:
        result = validate(client, config)
    recorded = None if module.check_mode else record(params["state_dir"], result)
    output = dict(changed=False, passed=result["passed"], consistency_percent=result["consistency_percent"],
                  comparable=result["comparable"], counts=result["counts"], examples=result["examples"],
                  orphaned_not_counted=result["orphaned_not_counted"],
                  type_changes=result["type_changes"],
                  threshold=result["threshold"], sample_percent=result["sample_percent"],
                  recorded=recorded, msg=result["message"])
    if not result["passed"]:
        module.fail_json(**output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
