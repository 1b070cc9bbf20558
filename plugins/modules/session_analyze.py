#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_analyze
short_description: Detect the session files' format and record it as the source profile every tool reads
description:
  - Scans a Flask-Session / cachelib C(FileSystemCache) directory and detects, from the files themselves, the
    file name hash (32 hex characters = V(md5), cachelib before 0.16; 64 = V(sha256)), the header style
    (a pickled int = werkzeug / cachelib 0.6 and older; a 4-byte struct = cachelib 0.7 and later), the pickle
    protocol(s) of the payloads, the cachelib / Flask-Session / Python generation that implies, and the value
    types present, with the sessions msgpack could not hold exactly (by kind of change and count).
  - Records that source profile in O(state_dir)C(/profile.json). M(sessionshift.migration.session_migrate), M(sessionshift.migration.session_validate),
    M(sessionshift.migration.session_export), M(sessionshift.migration.session_backup), the Flask interface and the C(sessionshift) command use it by
    default, and refuse an explicit setting that contradicts it, naming both values and the fix.
  - A directory holding two header styles or both hashes is reported in RV(profile.mixed), not guessed;
    tools that need that setting then require it explicitly.
  - The key prefix cannot be told from cachelib files (a file name is C(hash(prefix + sid))), so the profile
    records O(key_prefix) as given.
  - Reports file names only, never session contents.
version_added: "0.2.0"
author: sessionshift contributors (!UNKNOWN)
options:
  key_prefix:
    description: The app's C(SESSION_KEY_PREFIX), recorded as given.
    type: str
    default: "session:"
  hash_method:
    description: When given, checked against the file names; a contradiction fails the task.
    type: str
    choices: [md5, sha256]
  header_style:
    description: When given, checked against the files' headers; a contradiction fails the task.
    type: str
    choices: [struct, pickle]
  pickle_protocol:
    description: When given, checked against the payloads; newer than the source's fails the task.
    type: int
    choices: [0, 1, 2, 3, 4, 5]
  serializer:
    description:
      - The Redis value format to record. V(pickle) (the default, or the one already recorded) is exact.
      - V(msgpack) is recorded only when every session is msgpack-exact; otherwise the task fails and says what
        would change.
    type: str
    choices: [pickle, msgpack]
  sample_size:
    description: Sessions timed to estimate the migration.
    type: int
    default: 500
attributes:
  check_mode:
    details:
      - The scan is read-only and runs in check mode too; only C(profile.json) is not written.
      - In check mode a O(session_dir) that does not exist yet (a dry run on a fresh host) is reported, not
        an error.
  diff_mode:
    details: Shows the recorded settings before and after.
notes:
  - C(changed) is true when the recorded settings (hash, header style, pickle protocol, value format) change.
  - Works under C(async)/C(poll).
seealso:
  - module: sessionshift.migration.session_migrate
  - module: sessionshift.migration.session_export
extends_documentation_fragment: sessionshift.migration.attributes,sessionshift.migration.sessionshift.files
"""

EXAMPLES = r"""
- name: Record what the session files are before anything moves
  sessionshift.migration.session_analyze:
    session_dir: /var/lib/app/sessions
  register: source

- name: Stop when the directory holds two formats
  ansible.builtin.assert:
    that: source.profile.mixed | length == 0
    fail_msg: "{{ source.msg }}"
"""

RETURN = r"""
profile:
  description: The source profile, as recorded; null in check mode when O(session_dir) does not exist yet.
  returned: always
  type: dict
  contains:
    hash_name:
      description: V(md5) or V(sha256); null when mixed or when there is no session file.
      type: str
    header_style:
      description: V(struct) or V(pickle); null when mixed or unknown.
      type: str
    pickle_protocol:
      description: The highest payload pickle protocol seen; files are written with it.
      type: int
    serializer:
      description: The Redis value format every tool uses.
      type: str
    generation:
      description: The cachelib / Flask-Session / Python generation the format implies.
      type: str
    mixed:
      description: Settings the directory holds more than one way, with the files per value.
      type: dict
    msgpack:
      description: Sessions msgpack would keep exactly and those it would change, by kind of change.
      type: dict
  sample:
    hash_name: md5
    header_style: pickle
    pickle_protocol: 4
    serializer: pickle
    generation: "werkzeug's cache or cachelib <= 0.6 ..."
    mixed: {}
    msgpack: {exact_sessions: 10, inexact_sessions: 3, changes: {"tuple -> list": 3}}
recorded:
  description: Path of the C(profile.json) written; null in check mode.
  returned: always
  type: str
counts:
  description: Session files, live, expired, corrupt and foreign files; empty when the directory is absent.
  returned: always
  type: dict
  contains:
    files:
      description: Session files read (cachelib's own bookkeeping and foreign entries not included).
      type: int
    sessions:
      description: Files that held a session (neither corrupt nor gone while read).
      type: int
    live:
      description: Sessions whose expiry has not passed, or that never expire.
      type: int
    expired:
      description: Sessions whose expiry has passed.
      type: int
    corrupt:
      description: Session files the restricted unpickler refused (corrupt, truncated or hostile).
      type: int
    foreign:
      description: Entries whose names are not session files'.
      type: int
errors:
  description:
    - Corrupt and hostile session files (the first 20), each by path and the reason the restricted
      unpickler refused it; all are counted in RV(counts.corrupt), and a warning names them.
    - M(sessionshift.migration.session_migrate) copies a structurally whole file unread (the exact format),
      so this is where a hostile pickle is named; every reader of the copy refuses it, as the app refuses the file.
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/app/sessions/0a1b..., reason: "hostile or foreign pickle: refused to load global 'posix.system'"}]
"""

import os

from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SessionshiftModule,
)


def main():
    module = SessionshiftModule("session_analyze", dict(sample_size=dict(type="int", default=500)),
                                session=True, file_format=True, decode_budget=True)
    # checked by SessionshiftModule
    from sessionshift import profile as profiles
    from sessionshift.analyze import AnalyzeConfig, analyze, profile_summary
    from sessionshift.keys import KeyLayout
    params = module.params
    given = {"hash_name": params["hash_method"], "header_style": params["header_style"],
             "pickle_protocol": params["pickle_protocol"]}
    config = AnalyzeConfig(session_dir=params["session_dir"], layout=KeyLayout(prefix=params["key_prefix"]),
                           serializer=params["serializer"], given=given,
                           state_dir=None if module.check_mode else params["state_dir"],
                           sample_size=params["sample_size"], style="module")
    if module.check_mode and not os.path.exists(params["session_dir"]):
        # A dry run of a whole rollout on a fresh host: the app's role creates it first.
        module.exit_json(changed=False, profile=None, recorded=None, counts={}, errors=[],
                         msg=f"session directory {params['session_dir']} does not exist yet: nothing to analyze")
    with module.failing(ValueError, OSError):  # ProfileError: both values and the fix
        before = profiles.load(params["state_dir"])
        if not os.path.isdir(params["session_dir"]):
            raise ValueError(f"session directory {params['session_dir']} does not exist or is not a directory")
        result = analyze(config)
    found = result["profile"]
    settings = {name: found[name] for name in profiles.SETTINGS}
    previous = before.settings() if before else None
    changed = previous != settings and result["refused"] is None
    counts = {name: result[name] for name in ("files", "sessions", "live", "expired", "corrupt", "foreign")}
    if result["refused"]:
        module.fail_json(msg=result["refused"], changed=False, profile=found, recorded=result["recorded"],
                         counts=counts)
    if result["corrupt"]:
        named = "; ".join(f"{os.path.basename(error['path'])}: {error['reason']}" for error in result["errors"][:5])
        module.warn(f"{result['corrupt']} corrupt or hostile session file(s), which the app reads as no session "
                    f"(listed in errors): {named}")
    if found["mixed"]:
        module.warn(f"the session directory holds more than one {', '.join(found['mixed'])}: not guessed; "
                    "tools that need it must be told (hash_method / header_style)")
    path = profiles.profile_path(params["state_dir"])
    module.finish(changed, profile=found, recorded=result["recorded"], counts=counts, errors=result["errors"],
                  msg=profile_summary(found).strip(),
                  diff={"before": _lines(previous), "after": _lines(settings),
                        "before_header": f"{path} (before)", "after_header": f"{path} (after)"})


def _lines(settings):
    if not settings:
        return ""
    return "".join(f"{name}: {value}\n" for name, value in settings.items())


if __name__ == "__main__":
    main()
