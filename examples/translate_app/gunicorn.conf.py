"""gunicorn settings for the demo app: several workers, Prometheus multiprocess metrics.

    TRANSLATE_APP_CONFIG=/etc/translate_app.json gunicorn -c examples/translate_app/gunicorn.conf.py

Environment: TRANSLATE_APP_BIND (default 127.0.0.1:8000), TRANSLATE_APP_WORKERS
(default 3), PROMETHEUS_MULTIPROC_DIR (default: a fresh temporary directory).
"""

import glob
import os
import tempfile

wsgi_app = "examples.translate_app.wsgi:app"
bind = os.environ.get("TRANSLATE_APP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("TRANSLATE_APP_WORKERS", "3"))
worker_class = "sync"
timeout = int(os.environ.get("TRANSLATE_APP_TIMEOUT", "30"))
graceful_timeout = 10
accesslog = os.environ.get("TRANSLATE_APP_ACCESS_LOG") or None
errorlog = "-"
# gunicorn's control socket has one default path per user: several app servers
# on one machine (tests, demos) would fight over it. Opt in with a path.
control_socket_disable = not os.environ.get("TRANSLATE_APP_CONTROL_SOCKET")
if os.environ.get("TRANSLATE_APP_CONTROL_SOCKET"):
    control_socket = os.environ["TRANSLATE_APP_CONTROL_SOCKET"]

# prometheus_client picks its multiprocess value store when it is imported, so
# the directory must be in the environment before any worker imports the app.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="translate-app-metrics-")


def on_starting(server):
    """Metrics of an earlier run of the server would be merged into ours: start empty."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.unlink(path)


def child_exit(server, worker):
    """A dead worker's live gauges must leave the merged /metrics."""
    from sessionshift.metrics import mark_process_dead

    mark_process_dead(worker.pid)
