"""The key operations on the engines the elasticache role provisions, not just on this redis-server.

Each test here runs against two redis-servers made to refuse what a real
deployment refuses (devstack/redis_server.ENGINE_PROFILES):

* ``elasticache``: the commands ElastiCache disables (CONFIG, SAVE, BGSAVE,
  DEBUG, REPLICAOF, SHUTDOWN, ...) renamed away;
* ``redis-6.2``: the oldest engine the role allows (the role's default); the
  commands Redis 7.0 added (EXPIRETIME, PEXPIRETIME, FUNCTION, ...) renamed away.

The tests are the suite's own, collected here a second time so that they use
this module's ``redis_server``: backfill, validation, export, backup and
restore, the phase-2 gate and the interface through phases 2-5 and back.
"""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from devstack.redis_server import ENGINE_PROFILES, RedisServer
from sessionshift import gates
from tests.integration import test_backup, test_export, test_interface, test_migrate
from tests.integration.test_backup import (  # noqa: F401 (collected here against the engine profiles)
    test_expired_entries_are_skipped,
    test_restore_never_overwrites_a_newer_key_nor_revives_a_logout,
)
from tests.integration.test_export import (  # noqa: F401
    test_export_under_live_writes_leaves_no_file_older_than_redis,
    test_export_writes_the_files_cachelib_would,
    test_logged_out_sessions_lose_their_stale_file,
    test_the_fetch_loads_its_script_again_after_redis_forgot_it,
)
from tests.integration.test_foundation import test_dual_write_gate_against_real_redis  # noqa: F401
from tests.integration.test_interface import (  # noqa: F401
    test_a_user_keeps_the_session_through_every_flip_and_rollback,
    test_logout_during_a_backfill_stays_logged_out,
    test_phase_4_write_retires_the_legacy_file_so_it_is_never_served_again,
    test_phase_5_moves_sessions_to_stock_keys_and_back_on_rollback,
)
from tests.integration.test_migrate import (  # noqa: F401
    test_copies_every_live_session_with_its_expiry_and_skips_expired,
    test_the_apps_newer_write_between_read_and_write_stays,
)
from tests.integration.test_validate import (  # noqa: F401
    test_all_consistent_after_the_backfill,
    test_counts_each_kind_of_problem_by_file_name,
)

pytestmark = pytest.mark.integration

# The fixtures those tests take, from their own modules.
config = test_migrate.config
session_dir = test_export.session_dir
env = test_interface.env

# A command each profile must refuse, proving the server is the one named.
REFUSED = {"elasticache": ("CONFIG", "GET", "maxmemory"), "redis-6.2": ("EXPIRETIME", "session:h:{x}")}


@pytest.fixture(scope="module", params=sorted(ENGINE_PROFILES))
def redis_server(request, tmp_path_factory, tls_files):
    server = RedisServer.start(str(tmp_path_factory.mktemp(f"redis-{request.param}")), tls_files,
                               profile=request.param)
    server.profile = request.param
    yield server
    server.stop()


def test_the_server_refuses_what_its_engine_refuses(redis_client, redis_server):
    with pytest.raises(ResponseError, match="unknown command"):
        redis_client.execute_command(*REFUSED[redis_server.profile])


def test_backup_flushall_restore_gives_the_same_keys(request, tmp_path, redis_client):
    test_backup.test_backup_flushall_restore_gives_the_same_keys(request, tmp_path, "standalone")


def test_the_phase_2_gate_reads_the_server_version(redis_server):
    settings = redis_server.settings()
    result = gates.evaluate({"gate": "dual_write", "alarms_in_alarm": [], "redis": {
        "url": settings.url, "username": settings.username, "password": settings.password,
        "ca_file": settings.ca_file}}, now=None)
    assert result.passed, result.reasons
    assert gates._version_tuple(result.facts["redis_version"]) >= gates.MIN_REDIS_VERSION
