# Copyright: sessionshift contributors
# Apache License 2.0

"""Documentation shared by the sessionshift modules (extends_documentation_fragment: sessionshift...).

Each piece of option text is written once below; the fragments are combinations of them
(ansible-doc and ansible-test read a fragment from an instance of this class). The texts are
module-level strings, which ansible-test's yamllint does not read: their YAML is checked by
ansible-doc and validate-modules on every module that uses them.
"""

# The `redis` option: plugins/module_utils/sessionshift_common.py REDIS_OPTIONS.
_REDIS = r"""
  redis:
    description: How to reach Redis / ElastiCache.
    type: dict
    required: true
    suboptions:
      url:
        description:
          - V(rediss://host:port/db) for TLS (what ElastiCache with in-transit encryption needs),
            V(redis://host:port/db) for plain TCP.
          - Never logged, since a URL can carry a password; prefer O(redis.password).
          - C(ssl_*) query options are refused; TLS is set with the options below.
        type: str
        required: true
      username:
        description: ACL user (RBAC user groups on ElastiCache); omit for the AUTH token alone.
        type: str
      password:
        description: The ACL user's password or the AUTH token. Never logged.
        type: str
      password_secret:
        description:
          - Name or ARN of a Secrets Manager secret whose C(SecretString) is the password (the AUTH token the
            elasticache role keeps there), read on the host with boto3's credentials (its instance profile).
          - Used when O(redis.password) is not given.
        type: str
      secret_region:
        description: Region of O(redis.password_secret) (boto3's default when omitted).
        type: str
      secret_endpoint_url:
        description: Secrets Manager endpoint (a moto server in tests); AWS's when omitted.
        type: str
      ca_file:
        description: CA bundle that signed the server certificate (the system's when omitted).
        type: path
      cert_file:
        description: Client certificate, when the server asks for one.
        type: path
      key_file:
        description: Key of the client certificate.
        type: path
      verify_tls:
        description:
          - Verify the server certificate and its host name.
          - Only a throw-away test setup turns this off; every run then warns, and the phase-2
            gate (M(sessionshift.migration.session_gate) O(sessionshift.migration.session_gate#module:gate=dual_write)) refuses the connection.
        type: bool
        default: true
      cluster:
        description: Cluster mode (a configuration endpoint; every primary is used).
        type: bool
        default: false
      connect_timeout:
        description: Seconds to wait for a connection.
        type: float
        default: 5.0
      socket_timeout:
        description: Seconds to wait for an answer.
        type: float
        default: 5.0
      retries:
        description: Retries, with jittered backoff, of transient errors (never of a refused password).
        type: int
        default: 3
"""

# How the app names its sessions (files and keys).
_NAMING = r"""
  key_prefix:
    description: The app's C(SESSION_KEY_PREFIX); part of every file name hash and Redis key.
    type: str
    default: "session:"
  hash_method:
    description:
      - How cachelib names session files; V(md5) before cachelib 0.16, V(sha256) since.
      - Default the source profile's (recorded in C(state_dir/profile.json) by M(sessionshift.migration.session_analyze);
        without one, detected from the first files of the session directory, else V(sha256)). A value that
        contradicts the profile is refused, with both values and the fix.
    type: str
    choices: [md5, sha256]
"""

# Limits on decoding one session: module_utils/sessionshift_common.py DECODE_BUDGET_ARG_SPEC.
_DECODE_BUDGET = r"""
  decode_budget:
    description:
      - Limits on decoding one session file or Redis value, which may have been planted by anyone who can
        write the session directory. A session over a limit is reported by its hashed file name and
        skipped; the run goes on.
      - Unset limits take the environment's C(SESSIONSHIFT_MAX_*) values, else the defaults below.
    type: dict
    suboptions:
      max_session_bytes:
        description: Largest file or value, in bytes (default 4 MiB).
        type: int
      max_depth:
        description: Deepest nesting of containers (default 100).
        type: int
      max_objects:
        description: Most values in one session, counted while decoding (default 1,000,000).
        type: int
      max_encoded_bytes:
        description:
          - Largest size the session would take written out without shared references (default 32 MiB);
            catches a few hundred bytes of pickle that reference one list from many levels.
        type: int
"""

# How the app encodes sessions in Redis.
_SERIALIZER = r"""
  serializer:
    description:
      - The Redis value format. V(pickle) (the default) is exact, every session comes back type for type
        (it is the source file's own pickle payload, read back only through a restricted unpickler).
        V(msgpack) changes types (tuple and set to list, UUID and Decimal to string...); M(sessionshift.migration.session_analyze)
        records it only for a corpus it proved msgpack-exact.
      - Default the source profile's (C(state_dir/profile.json)); a value that contradicts it is refused.
    type: str
    choices: [pickle, msgpack]
"""

# The session directory, for the modules that read or write session files, and the host's state.
_SESSION_DIR = r"""
  session_dir:
    description: The app's session directory (Flask C(SESSION_FILE_DIR)).
    type: path
    required: true
  state_dir:
    description:
      - The host's sessionshift state directory. It holds the phase (C(phase.json)), the source profile
        (C(profile.json)) and the records of the runs (C(migrate.json), C(validation.json), C(export.json));
        the description says which of them this module reads and writes.
    type: path
    default: /var/lib/sessionshift
"""

# The modules run the package on the host they manage.
_REQUIREMENTS = r"""
requirements:
  - sessionshift (installed on the host by the session_app role)
"""


def _options(*parts):
    return "\noptions:" + "".join(parts) + _REQUIREMENTS


class ModuleDocFragment:
    # Set on the instance (the plugin loader makes one): ansible-test's yamllint reads the class
    # body's assignments as YAML literals, and these texts are composed.
    def __init__(self):
        # The `redis` option alone.
        self.DOCUMENTATION = _options(_REDIS)
        self.NAMING = _options(_NAMING)
        self.DECODE_BUDGET = _options(_DECODE_BUDGET)
        self.SERIALIZER = _options(_SERIALIZER)
        # The session files of this host: directory and decode limits (session_analyze, session_cleanup).
        self.FILES = _options(_SESSION_DIR, _DECODE_BUDGET)
        # The session files and their copies in Redis (session_migrate, session_validate, session_export).
        self.SESSIONS = _options(_REDIS, _SESSION_DIR, _NAMING, _SERIALIZER, _DECODE_BUDGET)
