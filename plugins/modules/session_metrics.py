#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sessionshift contributors
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: session_metrics
short_description: Read the sessionshift interface's counters from an app's /metrics page
description:
  - Fetches the Prometheus text page the sessionshift Flask interface serves (all gunicorn workers
    merged) and returns the numbers the rollout gates and the post-flip health watch compare
    (fallback reads, write errors, shadow mismatches, journal depth, request totals).
  - Read-only; never reports a change and runs the same in check mode.
version_added: "0.1.0"
author: sessionshift contributors (!UNKNOWN)
options:
  url:
    description: The app's metrics URL. Never logged, since a URL can carry credentials (V(http://user:password@host/)).
    type: str
    default: http://127.0.0.1:8000/metrics
  timeout:
    description: Seconds to wait for the page.
    type: float
    default: 10
  validate_certs:
    description: Verify the TLS certificate of an https URL.
    type: bool
    default: true
  include_samples:
    description: Also return every parsed sample (name, labels, value) for debugging.
    type: bool
    default: false
notes:
  - Requires the sessionshift package on the host that runs the module.
extends_documentation_fragment: sessionshift.migration.attributes.no_diff
"""

EXAMPLES = r"""
- name: Read the session counters after the flip
  sessionshift.migration.session_metrics:
    url: "http://127.0.0.1:8000/metrics"
  register: app_metrics

- name: Fail when reads fell back to files
  ansible.builtin.assert:
    that: app_metrics.fallback_reads == 0
"""

RETURN = r"""
requests_total:
  description: Requests served by the app since its workers started.
  returned: success
  type: int
server_errors:
  description: Responses with a 5xx status.
  returned: success
  type: int
fallback_reads:
  description: Reads in a Redis-read phase that had to use a file.
  returned: success
  type: int
fallback_rate:
  description: RV(fallback_reads) divided by the reads that found a session (0 when there were none).
  returned: success
  type: float
write_errors:
  description: Failed session writes per backend (file, redis).
  returned: success
  type: dict
write_errors_total:
  description: All failed session writes.
  returned: success
  type: int
shadow_mismatches:
  description: Phase-2 sampled reads whose Redis copy differed from the file.
  returned: success
  type: int
journal_depth:
  description: Failed Redis writes waiting for replay on the host.
  returned: success
  type: int
phases_seen:
  description: The phases the live workers served their last request in.
  returned: success
  type: list
  elements: int
samples:
  description: Every sample, when O(include_samples) is set.
  returned: when include_samples
  type: dict
"""

from ansible.module_utils.urls import fetch_url
from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
    SessionshiftModule,
)


def main():
    module = SessionshiftModule("session_metrics", dict(
        url=dict(type="str", default="http://127.0.0.1:8000/metrics", no_log=True),
        timeout=dict(type="float", default=10),
        validate_certs=dict(type="bool", default=True),
        include_samples=dict(type="bool", default=False),
    ))
    from sessionshift.metrics import gate_summary, parse_metrics  # checked by SessionshiftModule
    url = module.params["url"]
    response, info = fetch_url(module, url, timeout=module.params["timeout"])
    if info["status"] != 200 or response is None:
        module.fail_json(msg=f"cannot read {url}: HTTP {info['status']} {info.get('msg', '')}".strip(),
                         status=info["status"], changed=False)
    text = response.read().decode("utf-8", errors="replace")
    with module.failing(ValueError, prefix=url):
        summary = gate_summary(text)
    if module.params["include_samples"]:
        summary["samples"] = {name: [dict(labels=labels, value=value) for labels, value in values]
                              for name, values in parse_metrics(text).items()}
    module.exit_json(changed=False, url=url, **summary)


if __name__ == "__main__":
    main()
