"""The source profile: what the session files are, detected from the files, recorded once.

Everything that reads or writes the app's sessions must agree with the files
on four things, or sessions are lost or changed:

=================  ===============================================  ==========================
setting            detected from                                    a wrong value...
=================  ===============================================  ==========================
``hash_name``      file name length: 32 hex = md5, 64 hex = sha256  logs every user out (the
                   (cachelib < 0.16 / >= 0.16)                      interface looks for files
                                                                    that are not there)
``header_style``   the header: a pickled int (werkzeug / cachelib   makes files the original
                   <= 0.6) or a 4-byte struct (cachelib >= 0.7)     library cannot read
``pickle_protocol``  the payload's PROTO opcode (5 needs Python     makes files a Python 3.7
                   3.8+)                                            app cannot read
``serializer``     chosen at analyze: ``pickle`` (exact, the        msgpack changes types
                   default) or ``msgpack`` when every session is    (tuple -> list...)
                   msgpack-exact
=================  ===============================================  ==========================

``sessionshift analyze`` (and the ``session_analyze`` module) scans the
directory, builds a :class:`SourceProfile` and records it in
``<state_dir>/profile.json``. Every tool then calls :func:`resolve`: a setting
nobody gave comes from the recorded profile (or, before any analyze, from a
quick look at the directory); a setting given explicitly that contradicts the
profile is refused (:class:`ProfileConflict`, naming both values and the
fix); a setting the directory holds two ways (``mixed``) is never guessed.

The key prefix cannot be told from cachelib files (a name is
``hash(prefix + sid)`` and the sid is not stored), so the profile records the
prefix it was given, and says so.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any

from . import exact, formats, state
from .errors import SessionshiftError
from .formats import DEFAULT_SERIALIZER, FileSession, value_format

PROFILE_VERSION = 1
QUICK_LOOK_FILES = 200  # files a tool reads to detect the format when no profile is recorded
MAX_EXAMPLES = 10
SETTINGS = ("hash_name", "header_style", "pickle_protocol", "serializer")
# What each setting is called where an operator sets it.
OPTION_NAMES: dict[str, dict[str, str]] = {
    "cli": {"hash_name": "--hash-method", "header_style": "--header-style",
            "pickle_protocol": "--pickle-protocol", "serializer": "--serializer"},
    "module": {"hash_name": "hash_method", "header_style": "header_style",
               "pickle_protocol": "pickle_protocol", "serializer": "serializer"},
    "flask": {"hash_name": "SESSIONSHIFT_HASH_METHOD", "header_style": "SESSIONSHIFT_HEADER_STYLE",
              "pickle_protocol": "SESSIONSHIFT_PICKLE_PROTOCOL", "serializer": "SESSIONSHIFT_SERIALIZER"},
}
# What a tool uses when neither an option, a profile nor the files say anything (a new,
# empty directory): what current cachelib writes, in a protocol every Python 3 reads.
DEFAULTS: dict[str, Any] = {"hash_name": "sha256", "header_style": "struct",
                            "pickle_protocol": formats.DEFAULT_PICKLE_PROTOCOL,
                            "serializer": DEFAULT_SERIALIZER}


class ProfileError(SessionshiftError, ValueError):
    """A setting cannot be settled: it contradicts the profile, or the files hold it two ways."""


class ProfileConflict(ProfileError):
    def __init__(self, setting: str, given: Any, recorded: Any, where: str, style: str):
        self.setting, self.given, self.recorded = setting, given, recorded
        option = OPTION_NAMES[style][setting]
        if setting == "serializer":
            fix = (f"drop {option} to use {recorded}; to change the Redis value format, run analyze "
                   f"again with the serializer you want (it refuses one that would change sessions)")
        else:
            fix = (f"drop {option} to use {recorded} (or set it to {recorded}); if the files really "
                   "changed, run analyze again (sessionshift analyze / session_analyze)")
        super().__init__(f"{option}={given} contradicts the source profile ({where}: {setting} "
                         f"{recorded}, detected from the session files): {fix}")


class ProfileMixed(ProfileError):
    def __init__(self, setting: str, counts: Mapping[str, int], where: str, style: str):
        self.setting = setting
        seen = ", ".join(f"{value} ({count:,} files)" for value, count in sorted(counts.items()))
        super().__init__(f"the session directory holds more than one {setting} ({seen}; {where}): "
                         f"sessionshift does not guess; set {OPTION_NAMES[style][setting]} to what the "
                         "app's current cachelib uses, and look at the other files (another app, or an "
                         "upgrade half done?)")


# --------------------------------------------------------------------------- the profile


@dataclasses.dataclass
class SourceProfile:
    """What the files are; the settings are None where the files say nothing or two things."""

    session_dir: str
    hash_name: formats.HashName | None = None
    header_style: formats.HeaderStyle | None = None
    pickle_protocol: int | None = None
    serializer: formats.SerializerName = DEFAULT_SERIALIZER
    key_prefix: str | None = None
    key_prefix_source: str = "given"
    generation: str = "unknown (no session file)"
    mixed: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    hashes: dict[str, int] = dataclasses.field(default_factory=dict)
    header_styles: dict[str, int] = dataclasses.field(default_factory=dict)
    protocols: dict[str, int] = dataclasses.field(default_factory=dict)
    sessions: int = 0  # sessions read (cachelib and seed files)
    complete: bool = True  # every file was read (False: a quick look at the first few)
    value_types: dict[str, int] = dataclasses.field(default_factory=dict)  # type -> sessions holding it
    msgpack: dict[str, Any] = dataclasses.field(default_factory=dict)
    recorded_at: str | None = None
    version: int = PROFILE_VERSION

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTINGS}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SourceProfile:
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in document.items() if name in fields})


def generation(header_style: str | None, hash_name: str | None, protocol: int | None) -> str:
    """The cachelib / Flask-Session / Python generation the detected format implies."""
    parts = []
    if header_style == "pickle":
        parts.append("werkzeug's cache or cachelib <= 0.6 (pickled-int header): Flask-Session <= 0.4 "
                     "with its cachelib of the time")
    elif header_style == "struct" and hash_name == "md5":
        parts.append("cachelib 0.7-0.15 (4-byte header, md5 names): Flask-Session 0.4-0.8")
    elif header_style == "struct" and hash_name == "sha256":
        parts.append("cachelib >= 0.16 (4-byte header, sha256 names): Flask-Session 0.4-0.8")
    elif header_style == "struct":
        parts.append("cachelib >= 0.7 (4-byte header)")
    if protocol is not None:
        parts.append("pickle protocol 5: Python >= 3.8" if protocol >= 5 else
                     f"pickle protocol {protocol}: Python <= 3.7 (or a newer one pinned to it); "
                     "files keep protocol <= 4")
    return "; ".join(parts) or "unknown (no session file)"


class ProfileBuilder:
    """Fed every session of a scan; :meth:`finish` makes the profile."""

    def __init__(self, session_dir: str, *, prefix: str, serializer: formats.SerializerName,
                 check_msgpack: bool = True, census: bool = True):
        self.session_dir = session_dir
        self.census = census  # the value types present (analyze's report; settings need none)
        self.prefix = prefix
        self.serializer = serializer
        self.check_msgpack = check_msgpack
        self.hashes: collections.Counter = collections.Counter()
        self.headers: collections.Counter = collections.Counter()
        self.protocols: collections.Counter = collections.Counter()
        self.types: collections.Counter = collections.Counter()
        self.changes: collections.Counter = collections.Counter()  # "tuple -> list": sessions
        self.inexact = 0
        self.examples: list[dict[str, Any]] = []
        self.sessions = 0
        self.seed_files = 0
        self._msgpack = value_format("msgpack")

    def add(self, session: FileSession) -> None:
        if session.sid is not None:
            self.sessions += 1
            self.seed_files += 1  # the seed's JSON files: no header, hash or protocol of their own
        else:
            self.add_shape(session.hash_name, session.header_style, session.protocol)
        if self.census:
            self.types.update(set(exact.iter_types(session.data)))
        if self.check_msgpack:
            self._check_msgpack(session)

    def add_shape(self, hash_name: str, header_style: str, protocol: int | None) -> None:
        """A cachelib session known by its name and structure alone (no census, no msgpack check)."""
        self.sessions += 1
        self.hashes[hash_name] += 1
        self.headers[header_style] += 1
        if protocol is not None:
            self.protocols[str(protocol)] += 1

    def _check_msgpack(self, session: FileSession) -> None:
        """Would msgpack give the app this session back exactly? If not, what would change."""
        try:
            comparison = exact.compare(session.data, self._msgpack.loads(self._msgpack.dumps(session.data)))
            kinds = {change.kind for change in comparison.type_changes}
            if comparison.value_differs and not kinds:
                kinds = {"value changed"}
            named = [change.as_dict() for change in comparison.type_changes[:3]]
        except formats.SessionValueError as exc:
            kinds, named = {"cannot encode"}, [{"reason": str(exc)}]
        if not kinds:
            return
        self.inexact += 1
        self.changes.update(kinds)
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"file": session.file_name, "changes": named})

    def finish(self, *, complete: bool = True) -> SourceProfile:
        mixed = {name: dict(counter) for name, counter in
                 (("hash_name", self.hashes), ("header_style", self.headers)) if len(counter) > 1}
        hash_name = _only(self.hashes)
        header_style = _only(self.headers)
        protocol = max((int(p) for p in self.protocols), default=None)
        msgpack = {}
        if self.check_msgpack:
            msgpack = {"exact_sessions": self.sessions - self.inexact, "inexact_sessions": self.inexact,
                       "changes": dict(self.changes.most_common()), "examples": self.examples}
        return SourceProfile(
            session_dir=self.session_dir, hash_name=hash_name, header_style=header_style,
            pickle_protocol=protocol, serializer=self.serializer, key_prefix=self.prefix,
            key_prefix_source="given (cachelib files store hash(prefix + sid), not the prefix)",
            generation=generation(header_style, hash_name, protocol), mixed=mixed,
            hashes=dict(self.hashes), header_styles=dict(self.headers), protocols=dict(self.protocols),
            sessions=self.sessions, complete=complete, value_types=dict(self.types.most_common()),
            msgpack=msgpack)


def _only(counter: collections.Counter) -> Any:
    return next(iter(counter)) if len(counter) == 1 else None


def check_serializer_choice(profile: SourceProfile) -> None:
    """Refuse a lossy Redis value format: msgpack only when every session is msgpack-exact."""
    fmt = value_format(profile.serializer)
    if fmt.exact or not profile.msgpack.get("inexact_sessions"):
        return
    changes = ", ".join(f"{kind} ({count:,})" for kind, count in list(profile.msgpack["changes"].items())[:6])
    raise ProfileError(
        f"serializer {profile.serializer} would change {profile.msgpack['inexact_sessions']:,} of "
        f"{profile.sessions:,} sessions ({changes}); keep the exact default (pickle)")


# --------------------------------------------------------------------------- detection


def detect(session_dir: str, *, prefix: str = formats.DEFAULT_PREFIX,
           serializer: formats.SerializerName = DEFAULT_SERIALIZER, limit: int | None = None,
           check_msgpack: bool = False, census: bool = True) -> SourceProfile:
    """Profile *session_dir* from its files (the first *limit* sessions, or all of them), each
    decoded; without *census*, no value types. (:func:`quick_look` decodes none it need not.)"""
    builder = ProfileBuilder(session_dir, prefix=prefix, serializer=serializer, check_msgpack=check_msgpack,
                             census=census)
    complete = True
    for entry in formats.scan_directory(session_dir, prefix=prefix):
        if isinstance(entry, FileSession):
            builder.add(entry)
            if limit is not None and builder.sessions >= limit:
                complete = False
                break
    return builder.finish(complete=complete)


def quick_look(session_dir: str, *, prefix: str = formats.DEFAULT_PREFIX,
               limit: int = QUICK_LOOK_FILES) -> SourceProfile:
    """The settings' part of :func:`detect` over the first *limit* sessions, told from each
    file's name and structure where they settle it (:func:`formats.cachelib_file_shape`),
    decoding only the others: what stands in for a recorded profile at every tool's start."""
    builder = ProfileBuilder(session_dir, prefix=prefix, serializer=DEFAULT_SERIALIZER,
                             check_msgpack=False, census=False)
    for kind, path in formats.iter_session_paths(session_dir):
        if builder.sessions >= limit:
            return builder.finish(complete=False)
        if kind not in ("session", "seed"):
            continue
        try:
            if kind == "session":
                raw, _info = formats.read_regular_file(path)
                shape = formats.cachelib_file_shape(raw, path)
                if shape is not None:
                    builder.add_shape(formats.detect_hash(os.path.basename(path)), *shape)
                    continue
            builder.add(formats.read_session_file(path, prefix=prefix))
        except (formats.SessionFileError, FileNotFoundError):
            continue  # skipped, as detect skips what it cannot read
    return builder.finish(complete=True)


def profile_path(state_dir: str) -> str:
    return state.state_path(state_dir, state.PROFILE_FILE)


def record(state_dir: str, profile: SourceProfile) -> str:
    """Write *profile* to ``<state_dir>/profile.json``."""
    profile.recorded_at = state.utc_now()
    path = profile_path(state_dir)
    state.write_json(path, profile.as_dict())
    return path


def load(state_dir: str | None) -> SourceProfile | None:
    """The recorded profile, or None when there is none."""
    if not state_dir:
        return None
    document = state.read_json(profile_path(state_dir))
    return SourceProfile.from_dict(document) if document else None


# --------------------------------------------------------------------------- resolving settings


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The settings a tool uses, and where each came from (given, profile, files, default)."""

    hash_name: formats.HashName
    header_style: formats.HeaderStyle
    pickle_protocol: int
    serializer: formats.SerializerName
    sources: dict[str, str]
    profile_path: str | None = None

    def value_format(self) -> formats.ValueFormat:
        return value_format(self.serializer, self.pickle_protocol)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(state_dir: str | None, session_dir: str | None, given: Mapping[str, Any], *,
            style: str = "cli", needs: Iterable[str] = SETTINGS) -> Resolved:
    """The settings to use: *given* ones (None = not given) checked against the profile.

    The profile is the one recorded in *state_dir*; without one, a quick look at
    *session_dir* (its first files) stands in for it, not recorded. *needs*
    names the settings the caller relies on: a mixed directory is refused only
    for those (reading accepts both header styles; writing must pick one).
    Raises :class:`ProfileConflict` or :class:`ProfileMixed`.
    """
    recorded = load(state_dir)
    where = profile_path(state_dir) if recorded else None
    found = recorded
    if found is None and session_dir and os.path.isdir(session_dir):
        found = quick_look(session_dir)
        where = f"a look at the first {found.sessions} files of {session_dir} (no profile recorded)"
    values, sources = settle(found, given, where=where, style=style, needs=needs,
                             recorded=recorded is not None)
    return Resolved(**values, sources=sources, profile_path=where if recorded else None)


def settle(found: SourceProfile | None, given: Mapping[str, Any], *, where: str | None, style: str,
           needs: Iterable[str] = SETTINGS, recorded: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, where each came from) for :data:`SETTINGS`: *given* ones checked against *found*."""
    needs = set(needs)
    values, sources = {}, {}
    for name in SETTINGS:
        explicit = given.get(name)
        detected = getattr(found, name) if found is not None else None
        if name == "serializer" and not recorded:
            detected = None  # chosen at analyze, not seen in the files
        mixed = found.mixed.get(name) if found is not None else None
        if explicit is not None:
            if detected is not None and not mixed and _differs(name, explicit, detected):
                raise ProfileConflict(name, explicit, detected, where, style)
            values[name], sources[name] = explicit, "given"
        elif mixed and name in needs:
            raise ProfileMixed(name, mixed, where, style)
        elif detected is not None:
            values[name], sources[name] = detected, "profile" if recorded else "files"
        else:
            values[name], sources[name] = DEFAULTS[name], "default"
    return values, sources


def _differs(name: str, given: Any, detected: Any) -> bool:
    if name == "pickle_protocol":
        # Older is always readable; newer than the source's is what breaks an older Python.
        return int(given) > int(detected)
    return given != detected
