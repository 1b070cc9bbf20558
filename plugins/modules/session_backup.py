#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_backup
short_description: Back up every session key in Redis to one file, or restore it without overwriting
description:
  - O(state=present) makes sure a backup exists at O(dest). It holds every session key under O(key_prefix)
    (hashed sessions, tombstones - a session key holding a logout's marker - and stock Flask-Session keys) with its absolute expiry in epoch milliseconds
    (read with C(TIME) and C(PTTL), which Redis 6.2 has), in one gzip file of JSON lines (base64 values)
    whose first line is a manifest (format version, C(created_at), source endpoint without credentials,
    counts per kind, SHA-256 of the payload). The file is written atomically with mode V(0600). An existing
    backup at O(dest) is kept unless O(force), so a re-run does not replace the backup taken before a rollback.
  - O(state=restored) puts the backup at O(src) back. It verifies the checksum and every entry first (a
    corrupt file fails with the reason and writes nothing), never overwrites a key that exists now (a
    newer write wins), never revives a session whose tombstone exists, restores tombstones with their
    remaining lifetime and skips entries that have expired. Restoring twice changes nothing the second time.
  - The emergency rollback takes a backup before it flips the fleet back to files.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  state:
    description:
      - V(present) makes a backup at O(dest) unless one is there; V(restored) restores O(src).
    type: str
    default: present
    choices: [present, restored]
  dest:
    description: The backup file to write (its directory must exist). Required with O(state=present).
    type: path
  src:
    description: The backup file to restore. Required with O(state=restored).
    type: path
  force:
    description: With O(state=present), replace an existing backup at O(dest).
    type: bool
    default: false
  batch_size:
    description: Keys per SCAN step and per pipelined round trip.
    type: int
    default: 500
  state_dir:
    description: Where the source profile (C(profile.json)) that gives O(hash_method) its default is recorded.
    type: path
    default: /var/lib/sessionshift
  generation:
    description:
      - With O(state=present), the Redis generation to back up (every app host reads one from phase 3 on).
        Default, the generation the phase file in O(state_dir) names. A restore uses the generation its
        manifest names.
    type: int
attributes:
  check_mode:
    details:
      - V(present) counts the keys that would be backed up and writes no file.
      - V(restored) verifies the file and counts what would be restored (from C(EXISTS)); writes no key.
notes:
  - Works under C(async)/C(poll).
  - In cluster mode every primary is backed up. A restore uses the key prefix recorded in the backup.
  - The backup holds live sessions; keep it as secret as the Redis password.
seealso:
  - module: sessionshift.migration.session_export
extends_documentation_fragment: sessionshift.migration.attributes.no_diff,sessionshift.migration.sessionshift,sessionshift.migration.sessionshift.naming
"""

EXAMPLES = r"""
- name: Back up Redis before the emergency rollback
  sessionshift.migration.session_backup:
    redis: "{{ sessionshift_redis }}"
    dest: "/var/backups/sessionshift/sessions-{{ ansible_date_time.iso8601_basic_short }}.jsonl.gz"
  async: 1800
  poll: 10
  register: backup

- name: Put the sessions back if the rollback was the mistake
  sessionshift.migration.session_backup:
    redis: "{{ sessionshift_redis }}"
    state: restored
    src: "{{ backup.path }}"
"""

RETURN = r"""
path:
  description: The backup file made, kept or restored.
  returned: always
  type: str
  sample: /var/backups/sessionshift/sessions-20261128T180211.jsonl.gz
created:
  description: With O(state=present), whether this run wrote the backup (false if one was kept, or in check mode).
  returned: when state is present
  type: bool
manifest:
  description: The backup's manifest (in check mode with O(state=present), the counts that would be backed up).
  returned: always
  type: dict
  sample: {format: sessionshift-backup, version: 1, created_at: "2026-11-28T18:02:11+00:00",
           source: "rediss://cache.example:6379", key_prefix: "session:", hash_method: sha256,
           counts: {hashed: 199800, tombstone: 40, stock: 0}, keys: 199840, payload_sha256: "9f2c..."}
restored:
  description: With O(state=restored), keys written per kind (would be, in check mode).
  returned: when state is restored
  type: dict
  sample: {hashed: 120, tombstone: 2, stock: 0}
restored_total:
  description: Sum of RV(restored).
  returned: when state is restored
  type: int
counts:
  description: With O(state=restored), C(kept_existing) (newer keys left alone), C(kept_logged_out) (a tombstone
    exists), C(expired) (skipped).
  returned: when state is restored
  type: dict
  sample: {kept_existing: 199700, kept_logged_out: 3, expired: 15}
"""

import os

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SESSION_ARG_SPEC,
    SessionshiftModule,
)


def backup(module, client, params, settings):
    from sessionshift.backup import create_backup  # checked by SessionshiftModule

    result = create_backup(client, module.key_layout(), params["dest"], source=settings.endpoint,
                           batch_size=params["batch_size"], overwrite=params["force"],
                           dry_run=module.check_mode)
    would_create = result.created or (module.check_mode and (params["force"] or not os.path.exists(params["dest"])))
    counts = result.manifest["counts"]
    verb = "would back up" if module.check_mode else ("backed up" if result.created else "kept the backup of")
    return dict(changed=would_create, path=result.path, created=result.created, manifest=result.manifest,
                msg=f"{verb} {result.manifest['keys']} key(s) ({counts['hashed']} sessions, "
                    f"{counts['tombstone']} tombstones, {counts['stock']} stock) at {result.path}")


def restore(module, client, params):
    from sessionshift.backup import restore_backup  # checked by SessionshiftModule

    result = restore_backup(client, params["src"], batch_size=params["batch_size"], dry_run=module.check_mode)
    counts = dict(kept_existing=result.kept_existing, kept_logged_out=result.kept_logged_out,
                  expired=result.expired)
    return dict(changed=result.changed, path=result.path, manifest=result.manifest, restored=result.restored,
                restored_total=result.restored_total, counts=counts,
                msg=f"{'would restore' if module.check_mode else 'restored'} {result.restored_total} key(s); "
                    f"{result.kept_existing} newer key(s) left alone, {result.expired} expired skipped")


def main():
    module = SessionshiftModule(
        "session_backup", redis=True, batch_size=True, profile=("hash_name",),
        required_if=[("state", "present", ["dest"]), ("state", "restored", ["src"])], argument_spec=dict(
            key_prefix=SESSION_ARG_SPEC["key_prefix"],
            hash_method=SESSION_ARG_SPEC["hash_method"],
            state_dir=SESSION_ARG_SPEC["state_dir"],
            state=dict(type="str", default="present", choices=["present", "restored"]),
            dest=dict(type="path"),
            src=dict(type="path"),
            force=dict(type="bool", default=False),
            generation=dict(type="int"),
        ),
    )
    params = module.params
    settings = module.redis_settings()
    with module.redis_client(settings, OSError, ValueError) as client:
        if params["state"] == "present":
            result = backup(module, client, params, settings)
        else:
            result = restore(module, client, params)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
