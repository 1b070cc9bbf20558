"""The interface's Prometheus metrics, and a reader the playbook gates use.

Under gunicorn every worker is a process of its own, so metrics use
prometheus_client's multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` (an
empty directory) before the app imports this module, and mark dead workers in
gunicorn's ``child_exit`` hook (``mark_process_dead``, see the demo app's
gunicorn.conf.py). Without the variable, the default registry is used (tests,
a single-process server).

The reader (:func:`parse_metrics`, :func:`gate_summary`) is what the
``session_metrics`` Ansible module calls: it turns the /metrics text into the
few numbers the forward gates and the post-flip watch compare.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

NAMESPACE = "sessionshift"

READS = Counter("session_reads", "Sessions loaded, by where they came from "
                "(redis, stock, file, legacy_file, emergency_file, none = new session)",
                ["phase", "source"], namespace=NAMESPACE)
FALLBACK_READS = Counter("session_fallback_reads", "Reads that had to use a file in a Redis-read phase "
                         "(reason: miss = key absent, error = Redis failed)",
                         ["phase", "reason"], namespace=NAMESPACE)
PROMOTIONS = Counter("session_promotions", "File sessions copied to Redis on read (copy_if_absent outcome)",
                     ["phase", "result"], namespace=NAMESPACE)
WRITES = Counter("session_writes", "Session writes and deletes that succeeded, per backend",
                 ["phase", "backend", "op"], namespace=NAMESPACE)
WRITE_ERRORS = Counter("session_write_errors", "Session writes and deletes that failed, per backend",
                       ["phase", "backend", "op"], namespace=NAMESPACE)
READ_ERRORS = Counter("session_read_errors", "Session reads that failed (Redis error, corrupt file)",
                      ["phase", "backend"], namespace=NAMESPACE)
UNAVAILABLE = Counter("session_unavailable", "Requests refused with 503 because no session store "
                      "could be used", ["phase", "op"], namespace=NAMESPACE)
EMERGENCY = Counter("session_emergency_file_writes", "Phase-4 writes that went to a file because Redis "
                    "failed (SESSIONSHIFT_EMERGENCY_FILE_FALLBACK)", ["op"], namespace=NAMESPACE)
JOURNAL_APPENDS = Counter("journal_appends", "Failed Redis writes recorded in the journal",
                          namespace=NAMESPACE)
JOURNAL_REPLAYS = Counter("journal_replays", "Journal entries replayed, by result",
                          ["result"], namespace=NAMESPACE)
JOURNAL_DEPTH = Gauge("journal_depth", "Journal entries waiting for replay on this host",
                      namespace=NAMESPACE, multiprocess_mode="livemostrecent")
SHADOW_READS = Counter("shadow_reads", "Phase-2 sampled comparisons of the file and Redis copies "
                       "(match, mismatch, missing, error)", ["result"], namespace=NAMESPACE)
SHADOW_MISMATCHES = Counter("shadow_mismatches", "Phase-2 shadow reads whose Redis copy differed",
                            namespace=NAMESPACE)
PHASE = Gauge("phase", "The phase this worker served its last request in (1-5)",
              namespace=NAMESPACE, multiprocess_mode="livemostrecent")
PHASE_FILE_ERRORS = Counter("phase_file_errors", "Unreadable or corrupt phase file seen "
                            "(the last known phase was kept)", namespace=NAMESPACE)
REQUESTS = Counter("http_requests", "Requests served, by status class", ["code"], namespace=NAMESPACE)
LATENCY = Histogram("session_op_seconds", "Latency of session storage operations",
                    ["backend", "op"], namespace=NAMESPACE,
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def render() -> tuple[bytes, str]:
    """(body, content type) of the /metrics page, all gunicorn workers merged."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """For gunicorn's ``child_exit`` hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --------------------------------------------------------------------------- reader


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a Prometheus text page: name -> [(labels, value), ...].

    Raises ValueError if the text is not a Prometheus exposition.
    """
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"not a Prometheus text page: {exc}") from None
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of *name*'s samples whose labels include *labels*."""
    return sum(value for sample_labels, value in samples.get(name, [])
               if all(sample_labels.get(k) == v for k, v in labels.items()))


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample_labels, value in samples.get(name, []):
        key = sample_labels.get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def gate_summary(text: str) -> dict:
    """The numbers the playbook gates compare, from one /metrics page."""
    samples = parse_metrics(text)
    n = f"{NAMESPACE}_"
    reads = total(samples, n + "session_reads_total")
    # Requests without a (live) session cookie load no session: not reads the rate is about.
    found = reads - total(samples, n + "session_reads_total", source="none")
    fallback = total(samples, n + "session_fallback_reads_total")
    requests = total(samples, n + "http_requests_total")
    phases = [value for _labels, value in samples.get(n + "phase", [])]
    return {
        "requests_total": int(requests),
        "server_errors": int(total(samples, n + "http_requests_total", code="5xx")),
        "reads_total": int(reads),
        "reads_by_source": {k: int(v) for k, v in
                            by_label(samples, n + "session_reads_total", "source").items()},
        "fallback_reads": int(fallback),
        "sessions_found": int(found),
        "fallback_rate": (fallback / found) if found else 0.0,
        "promotions": int(total(samples, n + "session_promotions_total")),
        "write_errors": {k: int(v) for k, v in
                         by_label(samples, n + "session_write_errors_total", "backend").items()},
        "write_errors_total": int(total(samples, n + "session_write_errors_total")),
        "read_errors_total": int(total(samples, n + "session_read_errors_total")),
        "unavailable": int(total(samples, n + "session_unavailable_total")),
        "emergency_file_writes": int(total(samples, n + "session_emergency_file_writes_total")),
        "shadow_reads": int(total(samples, n + "shadow_reads_total")),
        "shadow_mismatches": int(total(samples, n + "shadow_mismatches_total")),
        "journal_depth": int(max((v for _l, v in samples.get(n + "journal_depth", [])), default=0)),
        "journal_appends": int(total(samples, n + "journal_appends_total")),
        "phase_file_errors": int(total(samples, n + "phase_file_errors_total")),
        "phases_seen": sorted({int(v) for v in phases if v}),
    }
