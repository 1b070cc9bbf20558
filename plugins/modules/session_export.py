#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_export
short_description: Export Redis sessions back to the app's cachelib session files (the rollback path)
description:
  - Writes every session in Redis (the hashed keys C(<prefix>h:{<file name>}) and stock Flask-Session keys
    C(<prefix><sid>)) to the session directory as the cachelib file the app would have written, with the
    Redis expiry in the header (no TTL gives V(0), never expires), atomically (temporary file and rename),
    with the directory's owner and group and mode V(0600) unless told otherwise.
  - Needed before any host leaves phase 4 or 5 for phase 3 or lower, because files stopped being written in
    phase 4. The rollback playbook runs it, flips the phase back to 3 (the app writes Redis and file again),
    then runs it again as a catch-up; the second run rewrites only what changed in between.
  - Files are written as the app's original library reads them, in the header style and pickle protocol of
    the source profile. A value in the exact V(pickle) format becomes the file's payload byte for byte once
    the restricted unpickler has accepted it.
  - A file whose session already matches Redis (type for type) is not rewritten, so a second run
    reports C(changed=false). Under live writes each written key is read again and rewritten if the app
    changed it meanwhile (at most O(max_rounds) times).
  - Removes the stale file of a session whose user logged out (its key holds the logout tombstone).
  - Values that cannot be decoded with O(serializer) are reported by key name (never their contents) and
    skipped. Pickle values are decoded with a restricted unpickler, never plain pickle.
  - Records the run in O(state_dir)C(/export.json) (C(finished_at), C(keys_exported), counts, phase at the
    time); the session_phase module refuses a rollback from phase 4/5 without it.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  header_style:
    description:
      - The file header; V(struct) for cachelib 0.7 and later, V(pickle) for older cachelib / werkzeug.
      - Default the source profile's (recorded by M(sessionshift.migration.session_analyze)); a value that contradicts it is refused.
    type: str
    choices: [struct, pickle]
  pickle_protocol:
    description:
      - Pickle protocol of the files written. Default the source profile's, so the app's original library
        (and its Python) reads them; a protocol newer than the source's is refused (Python 3.7 cannot read 5).
    type: int
    choices: [0, 1, 2, 3, 4, 5]
  mode:
    description:
      - Permissions of the files written, as a quoted octal string (V("0600"), V("0640")).
      - A number is refused (YAML reads an unquoted V(600) as decimal, mode 01130); so is a mode that takes
        read or write from the owner.
    type: raw
    default: "0600"
  owner:
    description: Owner (name or uid) of the files written; default the session directory's owner.
    type: str
  group:
    description: Group (name or gid) of the files written; default the session directory's group.
    type: str
  batch_size:
    description: Keys per SCAN step and per pipelined round trip.
    type: int
    default: 500
  max_rounds:
    description: How many times a session the app keeps changing is rewritten before it is reported unstable.
    type: int
    default: 5
  workers:
    description:
      - Processes that fetch, decode and write files while the module scans; V(0) is one per CPU (at most 4),
        V(1) does everything in one process.
    type: int
    default: 0
  from_backup:
    description:
      - Redis is gone (an emergency rollback from phase 4 or 5 with Redis down) - write the files from this
        backup (a C(session_backup) file on this host) instead of from Redis. No Redis is contacted.
      - A file changed after the backup was taken (the emergency file fallback wrote it) is kept; a backed-up
        tombstone removes its session's file; what was written to Redis alone after the backup is lost.
      - That loss is counted from this host's ledger of phase-4/5 writes (C(ledger/) in O(state_dir)), and the
        logouts made after the backup are applied (see RV(after_backup)).
      - Recorded in C(export.json) with C(source), so the host may then step back to redis_read.
    type: path
attributes:
  check_mode:
    details: Reads Redis and the files; writes, removes and records nothing, and reports what would change.
  diff_mode:
    details: The counts of files to write and to remove, before and after.
notes:
  - Works under C(async)/C(poll); an export of many sessions should use it.
  - Run it on each app host (it writes that host's session directory), as the app's user or root.
  - In cluster mode every primary is scanned.
  - C(changed) is true when a file was written or removed (would be, in check mode); the C(export.json)
    record is bookkeeping and written on every run that is not in check mode.
seealso:
  - module: sessionshift.migration.session_phase
  - module: sessionshift.migration.session_backup
extends_documentation_fragment: sessionshift.migration.attributes,sessionshift.migration.sessionshift.sessions
"""

EXAMPLES = r"""
- name: Export Redis to files before leaving phase 4
  sessionshift.migration.session_export:
    redis: "{{ sessionshift_redis }}"
    session_dir: /var/lib/app/sessions
  async: 3600
  poll: 10
  register: export

- name: Flip back to phase 3 (the app writes Redis and file again)
  sessionshift.migration.session_phase:
    state_dir: /var/lib/sessionshift
    phase: redis_read

- name: Catch-up export (only sessions changed since the first export)
  sessionshift.migration.session_export:
    redis: "{{ sessionshift_redis }}"
    session_dir: /var/lib/app/sessions

- name: Older cachelib (md5 names, pickled header), pickle values, files owned by www-data
  sessionshift.migration.session_export:
    redis: "{{ sessionshift_redis }}"
    session_dir: /srv/app/flask_session
    hash_method: md5
    header_style: pickle
    serializer: pickle
    owner: www-data
    group: www-data
    mode: "0640"
"""

RETURN = r"""
keys_exported:
  description: Sessions whose file now matches Redis (written plus unchanged).
  returned: always
  type: int
  sample: 199840
written:
  description: Files created or replaced (would be, in check mode).
  returned: always
  type: int
  sample: 1520
unchanged:
  description: Files that already matched Redis and were left alone.
  returned: always
  type: int
  sample: 198320
removed:
  description: Stale files of logged-out (tombstoned) sessions removed (would be, in check mode).
  returned: always
  type: int
  sample: 12
removed_files:
  description: File names removed (at most 50).
  returned: always
  type: list
  elements: str
counts:
  description:
    - Every outcome; C(scanned) keys seen, C(expired) expiry passed during the run, C(vanished) deleted between
      SCAN and GET, C(rewrites) extra writes because the app changed a session meanwhile, C(undecodable),
      C(unstable) still changing after O(max_rounds).
  returned: always
  type: dict
  sample: {scanned: 199852, written: 1520, unchanged: 198320, removed: 12, expired: 0, vanished: 0, rewrites: 3,
           undecodable: 0, unstable: 0}
undecodable_files:
  description:
    - Sessions whose Redis value could not be decoded (at most 50); they were skipped.
    - Listed by hashed file name, never by key name (a stock key's name is the live session id).
  returned: always
  type: list
  elements: str
unstable_files:
  description:
    - Sessions still changing after O(max_rounds) writes (at most 50), by hashed file name; the catch-up
      export settles them.
  returned: always
  type: list
  elements: str
record:
  description: The C(export.json) path written (null in check mode).
  returned: always
  type: str
  sample: /var/lib/sessionshift/export.json
phase:
  description: This host's phase label from C(phase.json) when the export ran (null if unknown).
  returned: always
  type: str
  sample: redis_only
after_backup:
  description:
    - With O(from_backup) only. What Redis acknowledged after the backup started, from this host's ledger.
    - C(since) when the backup started, C(ledger) false when this host recorded no phase-4/5 write (nothing
      could be counted), C(lost_sessions) created since (not in the backup, lost), C(older_sessions) written
      since (back at the backup's value), C(logouts_kept) logouts since (their files removed).
  returned: when O(from_backup) is set
  type: dict
  sample: {since: "2026-11-28T18:00:02+00:00", ledger: true, lost_sessions: 3, older_sessions: 12,
           logouts_kept: 1}
finished_at:
  description: When the export finished (ISO 8601, UTC).
  returned: always
  type: str
  sample: "2026-11-28T18:02:11+00:00"
"""

import grp
import pwd

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SessionshiftModule,
    counts_of,
)

COUNTS = ("scanned", "written", "unchanged", "removed", "expired", "vanished", "rewrites", "undecodable",
          "unstable")


def numeric_id(name, lookup):
    """A uid/gid from a name or a number; None (the directory's) when not given."""
    if not name:
        return None
    if name.isdigit():
        return int(name)
    return lookup(name)


def main():
    module = SessionshiftModule(
        "session_export", redis=True, session=True, file_format=True, decode_budget=True, batch_size=True,
        profile=("hash_name", "serializer", "header_style", "pickle_protocol"), argument_spec=dict(
            mode=dict(type="raw", default="0600"),
            owner=dict(type="str"),
            group=dict(type="str"),
            max_rounds=dict(type="int", default=5),
            workers=dict(type="int", default=0),
            from_backup=dict(type="path"),
        ),
    )
    # imported once SessionshiftModule has checked the package:
    from sessionshift import state
    from sessionshift.export import export_sessions
    from sessionshift.options import file_mode
    params = module.params
    with module.failing(ValueError, KeyError, prefix="session_export: bad mode, owner or group"):
        mode = file_mode(params["mode"])
        uid = numeric_id(params["owner"], lambda name: pwd.getpwnam(name).pw_uid)
        gid = numeric_id(params["group"], lambda name: grp.getgrnam(name).gr_gid)
    if params["from_backup"]:
        _from_backup(module, params, mode)
    settings = module.redis_settings()
    with module.redis_client(settings, OSError, RuntimeError, ValueError) as client:
        result = export_sessions(
            client, module.key_layout(), params["session_dir"], serializer=params["serializer"],
            header_style=params["header_style"], protocol=params["pickle_protocol"], mode=mode, uid=uid, gid=gid,
            state_dir=params["state_dir"], batch_size=params["batch_size"],
            max_rounds=params["max_rounds"], workers=params["workers"], dry_run=module.check_mode)

    if result.undecodable:
        module.warn(f"{result.undecodable} session(s) could not be decoded with the {params['serializer']} "
                    "serializer and were not exported (see undecodable_files)")
    if result.unstable:
        module.warn(f"{result.unstable} session(s) kept changing while exported; flip to phase 3 and run "
                    "the catch-up export")
    module.finish(
        result.changed, keys_exported=result.keys_exported, written=result.written,
        unchanged=result.unchanged, removed=result.removed, removed_files=result.removed_files,
        counts=counts_of(result, COUNTS), undecodable_files=result.undecodable_files,
        unstable_files=result.unstable_files,
        record=None if module.check_mode else state.state_path(params["state_dir"], state.EXPORT_FILE),
        phase=result.phase, finished_at=result.finished_at,
        diff={"before_header": params["session_dir"], "after_header": params["session_dir"],
              "before": f"files to write: {result.written}\nstale files to remove: {result.removed}\n",
              "after": "files to write: 0\nstale files to remove: 0\n"},
        msg=f"{result.keys_exported} session(s) in files ({result.written} written, {result.unchanged} "
            f"unchanged), {result.removed} logged-out file(s) removed")


def _from_backup(module, params, mode):
    """Files from a backup, with no Redis at all (the emergency rollback from phase 4/5, Redis down)."""
    from sessionshift import state
    from sessionshift.backup import files_from_backup, loss_summary  # checked by SessionshiftModule

    if module.check_mode:
        module.exit_json(changed=True, msg=f"would write the session files from {params['from_backup']}")
    with module.failing(OSError, ValueError, prefix=f"session_export from {params['from_backup']}"):
        result = files_from_backup(params["from_backup"], params["session_dir"], state_dir=params["state_dir"],
                                   serializer=params["serializer"], header_style=params["header_style"],
                                   protocol=params["pickle_protocol"], mode=mode)
    module.finish(
        result.changed, written=result.written, unchanged=result.unchanged, removed=result.removed,
        expired=result.expired, source=result.source, finished_at=result.finished_at,
        after_backup=result.after_backup, record=state.state_path(params["state_dir"], state.EXPORT_FILE),
        msg=f"{result.written} session file(s) written from the {result.source}, {result.unchanged} newer "
            f"file(s) kept, {result.removed} logged-out file(s) removed; " + loss_summary(result.after_backup))


if __name__ == "__main__":
    main()
