#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_cleanup
short_description: Remove retired file sessions (expired, older than a cutoff, or all of them in phase 5)
description:
  - Removes cachelib session files from the app's session directory. O(scope) chooses which
    (each scope includes the one before it).
  - V(expired) removes sessions whose own expiry has passed; safe in every phase.
  - V(older) also removes sessions whose file was last written more than O(max_age) seconds ago.
  - V(all) removes every session file; refused unless this host's C(phase.json) in O(state_dir) says phase 5
    (C(redis)), because before that a file may be the only copy of a session or the rollback's way back.
  - Never touches files that are not sessions (foreign names, symlinks, directories) nor cachelib's own
    bookkeeping (its count file and temporary files). Session files that cannot be read (corrupt, or holding
    types outside the restricted unpickler) are kept unless O(include_corrupt).
  - A file the app rewrote after it was read is left alone.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  scope:
    description: Which session files to remove.
    type: str
    default: expired
    choices: [expired, older, all]
  max_age:
    description:
      - With O(scope=older), remove files last written more than this many seconds ago (0 or more).
      - In phases V(file) and V(dual_write) the app reads sessions from files only, so a O(max_age) that would
        remove a session whose own expiry has not passed is refused unless O(force).
    type: int
  force:
    description: With O(scope=older), remove live sessions even where files are the only copy the app reads.
    type: bool
    default: false
  include_corrupt:
    description:
      - Also remove session files that cannot be read (with O(scope=older), only those older than O(max_age)).
    type: bool
    default: false
  key_prefix:
    description: The app's C(SESSION_KEY_PREFIX) (names the seed's C(sess_<sid>) files).
    type: str
    default: "session:"
attributes:
  check_mode:
    details: Lists what would be removed (RV(removed_files)) with counts; removes nothing.
  diff_mode:
    details: The file names removed (at most 100) before, none after.
notes:
  - Works under C(async)/C(poll).
  - cachelib's count file is not adjusted; cachelib recounts when it prunes.
seealso:
  - module: sessionshift.migration.session_phase
extends_documentation_fragment: sessionshift.migration.attributes,sessionshift.migration.sessionshift.files
"""

EXAMPLES = r"""
- name: Remove expired file sessions (any phase)
  sessionshift.migration.session_cleanup:
    session_dir: /var/lib/app/sessions

- name: What would go if sessions untouched for a week were removed
  sessionshift.migration.session_cleanup:
    session_dir: /var/lib/app/sessions
    scope: older
    max_age: 604800
  check_mode: true
  register: preview

- name: Retire every file session once the host is in phase 5
  sessionshift.migration.session_cleanup:
    session_dir: /var/lib/app/sessions
    scope: all
    state_dir: /var/lib/sessionshift
"""

RETURN = r"""
removed:
  description: Files removed (would be, in check mode).
  returned: always
  type: int
  sample: 1820
removed_files:
  description: Names of the files removed (at most 100).
  returned: always
  type: list
  elements: str
counts:
  description:
    - C(removed_by_reason) (expired, older, all, corrupt), C(kept) live sessions out of scope, C(corrupt_kept),
      C(skipped_foreign), C(skipped_cachelib), C(changed_meanwhile) (rewritten by the app, kept).
  returned: always
  type: dict
  sample: {removed_by_reason: {expired: 1800, older: 20, all: 0, corrupt: 0}, kept: 5400, corrupt_kept: 2,
           skipped_foreign: 1, skipped_cachelib: 1, changed_meanwhile: 0}
errors:
  description: Files that could not be removed, with the reason.
  returned: always
  type: list
  elements: str
"""

import time

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    KEY_PREFIX_OPTION,
    STATE_DIR_OPTION,
    SessionshiftModule,
    counts_of,
)

COUNTS = ("removed_by_reason", "kept", "corrupt_kept", "skipped_foreign", "skipped_cachelib", "changed_meanwhile")


def main():
    module = SessionshiftModule(
        "session_cleanup", decode_budget=True, required_if=[("scope", "older", ["max_age"])],
        argument_spec=dict(
            session_dir=dict(type="path", required=True),
            scope=dict(type="str", default="expired", choices=["expired", "older", "all"]),
            max_age=dict(type="int"),
            include_corrupt=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            state_dir=STATE_DIR_OPTION,
            key_prefix=KEY_PREFIX_OPTION,
        ),
    )
    from sessionshift.cleanup import cleanup_sessions  # checked by SessionshiftModule
    params = module.params
    if params["max_age"] is not None and params["max_age"] < 0:
        module.fail_json(msg=f"session_cleanup: max_age {params['max_age']} is negative; give the age in "
                             "seconds (e.g. the session lifetime, 2678400 for 31 days)", changed=False)
    cutoff = time.time() - params["max_age"] if params["max_age"] is not None else None
    with module.failing(ValueError, OSError):
        result = cleanup_sessions(params["session_dir"], scope=params["scope"], cutoff=cutoff,
                                  include_corrupt=params["include_corrupt"], dry_run=module.check_mode,
                                  state_dir=params["state_dir"], prefix=params["key_prefix"],
                                  force=params["force"])
    for error in result.errors:
        module.warn(error)
    module.finish(
        result.changed, removed=result.removed, removed_files=result.removed_files,
        counts=counts_of(result, COUNTS), errors=result.errors,
        diff={"before_header": params["session_dir"], "after_header": params["session_dir"],
              "before": "".join(f"{name}\n" for name in result.removed_files), "after": ""},
        msg=f"{'would remove' if module.check_mode else 'removed'} {result.removed} session file(s) "
            f"(scope {params['scope']}); {result.kept} live session(s) kept")


if __name__ == "__main__":
    main()
