"""Defaults every entry point shares: the CLI, the Ansible modules, the Flask interface, the tools.

Change one here and it changes everywhere; the modules' DOCUMENTATION repeats the values
(ansible-test sanity checks that documentation and argument specs agree).
"""

from __future__ import annotations

# Where an app host keeps its phase file, checkpoints, records and journal.
STATE_DIR = "/var/lib/sessionshift"

# Sessions (or keys) per Redis pipeline in the backfill, validation, export and backup: large
# enough that round trips stop mattering, small enough to keep each reply and Lua call short.
BATCH_SIZE = 500
