#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_phase
short_description: Set or read an app host's session migration phase
description:
  - Writes the host's phase file (O(state_dir)/phase.json) that the sessionshift Flask interface watches;
    every gunicorn worker picks the new phase up within two seconds, without a restart.
  - The file is replaced atomically (temporary file and rename) and keeps the last 20 moves
    (from, to, when, by whom).
  - Refuses a move that skips a phase unless O(force), and refuses going back from phase 4 or 5 to 3 or
    lower unless a Redis to file export finished after the host entered phase 4
    (O(state_dir)/export.json); the failure gives the reason and the command that fixes it.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  state_dir:
    description: The host's sessionshift state directory.
    type: path
    default: /var/lib/sessionshift
  phase:
    description:
      - The phase to set, by label or number; required with O(state=present).
      - V(file)=1, V(dual_write)=2, V(redis_read)=3, V(redis_only)=4, V(redis)=5.
    type: str
    choices: [file, dual_write, redis_read, redis_only, redis, "1", "2", "3", "4", "5"]
  state:
    description: V(present) sets the phase; V(query) only reads it.
    type: str
    choices: [present, query]
    default: present
  force:
    description: Allow a move that skips phases (only when every host is drained).
    type: bool
    default: false
  emergency:
    description:
      - Marks the move as part of an emergency rollback in the history. It allows nothing more than a normal
        move; an emergency steps back one phase at a time (redis_read, dual_write, file) like the playbooks.
    type: bool
    default: false
  changed_by:
    description: Who made the move, for the history; defaults to the remote user.
    type: str
  generation:
    description:
      - "The Redis generation the host is to read and write (key names C(<prefix>g<N>:h:{<file>}))."
      - Taken only by the move out of V(file), or while the host is in V(dual_write); refused when lower
        than a generation the host retired by returning to V(file). By default the move out of V(file)
        takes the host's next unretired generation. The playbooks pass the fleet's, so every host reads one.
    type: int
  session_dir:
    description: The app's session directory; when set, the export that lets a host leave phase 4 or 5 must have written it.
    type: path
  key_prefix:
    description: The app's key prefix; when set, the export that lets a host leave phase 4 or 5 must have read it.
    type: str
notes:
  - Requires the sessionshift package on the target host.
extends_documentation_fragment: sessionshift.migration.attributes
"""

EXAMPLES = r"""
- name: Start dual writes on this host
  sessionshift.migration.session_phase:
    phase: dual_write
    changed_by: "{{ lookup('ansible.builtin.env', 'USER') }}"

- name: Read the phase
  sessionshift.migration.session_phase:
    state: query
  register: current

- name: Roll back from redis_only after the export
  sessionshift.migration.session_phase:
    phase: redis_read
"""

RETURN = r"""
phase:
  description: The host's phase after the task (its label).
  returned: always
  type: str
  sample: dual_write
number:
  description: The phase number (1-5).
  returned: always
  type: int
  sample: 2
previous_phase:
  description: The phase before the task.
  returned: always
  type: str
  sample: file
history:
  description: The last moves, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{"from": "file", "to": "dual_write", "at": "2026-01-05T02:00:00+00:00", "by": "ops",
            "forced": false, "emergency": false}]
redis_only_since:
  description: When the host last entered phase 4 or 5 from 3 or lower (null otherwise).
  returned: always
  type: str
generation:
  description: The Redis generation the host reads and writes.
  returned: always
  type: int
  sample: 1
retired_generation:
  description: The newest generation the host retired by returning to V(file) (null if none).
  returned: always
  type: int
next_generation:
  description: The lowest generation the host may use on its next move out of V(file).
  returned: always
  type: int
reason:
  description: Why a move was refused.
  returned: failure
  type: str
fix:
  description: What to run so that the move is allowed.
  returned: failure
  type: str
"""

import getpass
import json

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    STATE_DIR_OPTION,
    SessionshiftModule,
)


def _result(record, previous):
    return dict(phase=record.phase.label, number=int(record.phase), previous_phase=previous.phase.label,
                history=list(record.history), redis_only_since=record.redis_only_since,
                generation=record.generation, retired_generation=record.retired_generation,
                next_generation=record.next_generation)


def main():
    module = SessionshiftModule(
        "session_phase", required_if=[("state", "present", ["phase"])], argument_spec=dict(
            state_dir=STATE_DIR_OPTION,
            phase=dict(type="str", choices=["file", "dual_write", "redis_read", "redis_only", "redis",
                                            "1", "2", "3", "4", "5"]),
            state=dict(type="str", choices=["present", "query"], default="present"),
            force=dict(type="bool", default=False),
            emergency=dict(type="bool", default=False),
            changed_by=dict(type="str"),
            generation=dict(type="int"),
            session_dir=dict(type="path"),
            key_prefix=dict(type="str", no_log=False),
        ),
    )
    # imported once SessionshiftModule has checked the package:
    from sessionshift.phasefile import export_caveat, phase_path, read_phase, set_phase
    from sessionshift.phases import Phase, Transition, TransitionRefused
    params = module.params
    with module.failing(ValueError, OSError, prefix=f"phase file in {params['state_dir']}"):
        if params["state"] == "query":
            record = read_phase(params["state_dir"])
            module.exit_json(changed=False, **_result(record, record))
        try:
            change = set_phase(params["state_dir"], Phase.parse(params["phase"]),
                               by=params["changed_by"] or _remote_user(), force=params["force"],
                               emergency=params["emergency"], check_only=module.check_mode,
                               generation=params["generation"], session_dir=params["session_dir"],
                               key_prefix=params["key_prefix"])
        except TransitionRefused as exc:  # the move, not the file: the message says why and the fix
            module.fail_on(exc, prefix="session_phase", phase=exc.current.label)
    if change.changed and Transition(change.before.phase, change.after.phase).needs_export:
        caveat = export_caveat(params["state_dir"])
        if caveat:
            module.warn(caveat)
    path = phase_path(params["state_dir"])
    module.finish(change.changed, **_result(change.after, change.before),
                  diff=dict(before=_as_text(change.before), after=_as_text(change.after),
                            before_header=path, after_header=path))


def _as_text(record):
    if not record.exists:
        return ""  # no phase file yet (phase file)
    return json.dumps(record.as_json(), indent=2, sort_keys=True) + "\n"


def _remote_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


if __name__ == "__main__":
    main()
