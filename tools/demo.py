"""make demo: the whole rollout on this machine (filled in by the rollout work, issue 6)."""

import sys

print("sessionshift demo: the rollout playbooks have not landed yet (issue 6).\n"
      "What works today: `make test` (formats, Redis layer, phase model against a real "
      "TLS + ACL redis-server).")
sys.exit(0)
