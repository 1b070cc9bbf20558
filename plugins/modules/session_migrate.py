#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_migrate
short_description: Backfill file sessions into Redis without overwriting or reviving anything
description:
  - Streams a Flask-Session / cachelib C(FileSystemCache) directory into Redis (standalone or cluster),
    pipelined, with several worker processes.
  - With the default V(pickle) value format, each file's own pickle payload becomes the Redis value byte for
    byte, copied unread (its structure checked, nothing decoded); nothing about a session can change on the way.
    Every reader of the value (the app, validation, export) decodes it with the restricted unpickler, so a
    hostile or over-budget payload is refused where it is read, as it is from the file.
  - The value format and the hash come from the source profile that M(sessionshift.migration.session_analyze) recorded.
  - Writes a session only where its key is absent (the app's newer value wins), never revives a session the
    user logged out of (its tombstone is respected), skips expired sessions and sets each key's expiry to the
    file's own (C(EXAT)).
  - Records finished shares of the directory in O(state_dir)C(/migrate.json), so a run that was killed or lost
    Redis resumes where it stopped when started again; rerunning is always safe.
  - Files whose structure is broken (empty, truncated) are reported with their path and the reason; no file
    is ever executed or deleted. Hostile pickles are named by M(sessionshift.migration.session_analyze),
    which decodes every file.
  - In check mode nothing is written (no key, no checkpoint); the module reports how many keys would be written.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  batch_size:
    description: Sessions per pipelined round trip.
    type: int
    default: 500
  workers:
    description: Worker processes reading and decoding files; V(0) uses the CPU count (at most 8).
    type: int
    default: 0
  restart:
    description: Ignore an unfinished checkpoint and scan every share again (safe, only slower).
    type: bool
    default: false
  retry_seconds:
    description: How long a batch is retried while Redis is unreachable (a restart, a failover) before failing.
    type: float
    default: 30.0
  default_lifetime:
    description: Lifetime in seconds given to the seed's C(sess_<sid>) JSON files, which carry no expiry; V(0) = none.
    type: int
    default: 0
  max_examples:
    description: Corrupt files listed in RV(errors); all of them are counted.
    type: int
    default: 50
attributes:
  check_mode:
    details: Reads the files and asks Redis which keys exist; writes no key and no checkpoint.
notes:
  - Works under C(async)/C(poll); long runs should use it.
  - C(changed) is true when at least one key was written (would be, in check mode).
extends_documentation_fragment: sessionshift.migration.attributes.no_diff,sessionshift.migration.sessionshift.sessions
"""

EXAMPLES = r"""
- name: Backfill this host's sessions into ElastiCache
  sessionshift.migration.session_migrate:
    redis:
      url: "rediss://{{ sessionshift_redis_host }}:6379/0"
      username: "{{ sessionshift_redis_user }}"
      password: "{{ sessionshift_redis_password }}"
    session_dir: /var/lib/app/sessions
    batch_size: 1000
  async: 3600
  poll: 15
  register: backfill

- name: How many sessions would be copied (writes nothing)
  sessionshift.migration.session_migrate:
    redis: "{{ sessionshift_redis }}"
    session_dir: /var/lib/app/sessions
  check_mode: true
  register: preview
"""

RETURN = r"""
written:
  description: Keys written to Redis by this run (0 in check mode).
  returned: always
  type: int
  sample: 184220
would_write:
  description: In check mode, keys that would be written.
  returned: always
  type: int
  sample: 0
counts:
  description:
    - Every outcome; C(scanned) files read, C(exists) already in Redis (left alone), C(tombstoned) logged out
      (not revived), C(expired), C(corrupt), C(vanished) (deleted while scanning), C(foreign) (not session
      files), C(skipped) (cachelib's own files).
  returned: always
  type: dict
  sample: {scanned: 200000, written: 184220, would_write: 0, exists: 15000, tombstoned: 12, expired: 760,
           corrupt: 8, vanished: 0, foreign: 1, skipped: 1}
errors:
  description:
    - Corrupt files (capped at O(max_examples)), with the reason; none were deleted.
    - With V(pickle) values, the files whose structure is broken; a hostile pickle is copied unread (see
      RV(copied_unread)) and named by M(sessionshift.migration.session_analyze).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/app/sessions/0a1b..., reason: "truncated or damaged: the pickle payload does not end with STOP"}]
copied_unread:
  description:
    - Whether values were copied as the files' own payload bytes without being decoded (the V(pickle) format).
    - They are checked by the restricted unpickler wherever they are read, as the files are.
  returned: always
  type: bool
resumed:
  description:
    - Whether an unfinished earlier run with the same settings was found.
    - Its finished shares were skipped; of the others, files whose sessions Redis already held were not read again.
  returned: always
  type: bool
shares_skipped:
  description: Shares (of 16) done by the interrupted run this one resumed.
  returned: always
  type: list
  elements: int
complete:
  description: Whether every share of the directory has been processed.
  returned: always
  type: bool
elapsed:
  description: Seconds the run took.
  returned: always
  type: float
checkpoint:
  description: Path of the checkpoint file (null in check mode).
  returned: always
  type: str
"""

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SessionshiftModule,
)


def main():
    module = SessionshiftModule(
        "session_migrate", redis=True, session=True, decode_budget=True, batch_size=True,
        profile=("serializer",), argument_spec=dict(
            workers=dict(type="int", default=0),
            restart=dict(type="bool", default=False),
            retry_seconds=dict(type="float", default=30.0),
            default_lifetime=dict(type="int", default=0),
            max_examples=dict(type="int", default=50),
        ),
    )
    from sessionshift.migrate import MigrateConfig, migrate, summary  # checked by SessionshiftModule
    params = module.params
    config = MigrateConfig(
        session_dir=params["session_dir"], layout=module.key_layout(), serializer=params["serializer"],
        pickle_protocol=params["pickle_protocol"],
        state_dir=params["state_dir"], batch_size=params["batch_size"], workers=params["workers"],
        dry_run=module.check_mode, restart=params["restart"], retry_seconds=params["retry_seconds"],
        default_lifetime=params["default_lifetime"], max_examples=params["max_examples"])
    settings = module.redis_settings()
    with module.failing(ValueError, OSError, settings=settings):
        result = migrate(settings, config)
    counts = result.counts
    module.finish(
        (counts["would_write"] if module.check_mode else counts["written"]) > 0,
        written=counts["written"], would_write=counts["would_write"], counts=counts,
        errors=result.errors, resumed=result.resumed, shares_skipped=result.shares_skipped,
        complete=result.complete, elapsed=round(result.elapsed, 3), checkpoint=result.checkpoint,
        workers=result.workers, copied_unread=result.copied_unread, msg=summary(result).splitlines()[0])


if __name__ == "__main__":
    main()
