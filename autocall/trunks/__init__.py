"""Trunk presets and the user's own trunk files.

A trunk file is a small YAML mapping (``presets/*.yaml`` in this package, and any
``NAME.yaml`` in the folder ``AUTOCALL_SIP_TRUNKS_DIR``, default ``trunks``)::

    description: Our PBX in the office
    preset: asterisk          # start from a shipped preset (optional)
    host: pbx.example.com
    port: 5060                # leave out: found by DNS (RFC 3263) for a name
    transport: udp            # udp, tcp or tls
    register: true
    caller_id_header: from    # from, pai (P-Asserted-Identity) or rpid (Remote-Party-ID)
    codecs: [g722, pcmu, pcma]  # audio codecs in offer order (default pcmu, pcma)
    user: robot
    password_env: PBX_PASSWORD  # the variable holding the password (never the file)
    caller_id: "+15550100"    # caller ID of `autocall sip check`'s test call
    echo: "*43"               # a number (or sip: URI) that answers: the test INVITE

A user file with a preset's name replaces that preset. Every problem is reported as
``file:line:col: error: field: message`` (:class:`TrunkError`), never a traceback.
``AUTOCALL_SIP_TRUNK=NAME`` makes calls go through that trunk (`autocall.config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from autocall.sip.callerid import CallerIdStyle, check_caller_id, parse_style
from autocall.sip.message import URI
from autocall.sip.sdp import SUPPORTED, parse_codecs

PRESETS_DIR = Path(__file__).parent / "presets"
USER_DIR_ENV = "AUTOCALL_SIP_TRUNKS_DIR"
DEFAULT_USER_DIR = Path("trunks")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_URI_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,64}")  # RFC 3261 §25.1, no escapes
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
# Fields a pattern must match whole, and what the value is not when it does not.
_WHOLE = {
    "preset": (_NAME, "is not a preset name (see `autocall sip trunks`)"),
    "host": (_HOST, "is not a host name or address (e.g. pbx.example.com, 192.0.2.10, "
             "[2001:db8::1]); no scheme, user or port here"),
    "user": (_URI_USER, "cannot be a SIP URI user (RFC 3261 §25.1): letters, digits and "
             "- _ . ! ~ * ' ( ) & = + $ , ; ? /"),
    "password_env": (_ENV_NAME, "is not an environment variable name (e.g. PBX_PASSWORD); "
                     "the password itself never goes in this file"),
}


class TrunkError(ValueError):
    """Trunk files that cannot be used; ``problems`` are ``file:line:col: error: …``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TrunkFile(BaseModel):
    """What a trunk file may say; every field may be left out (a preset gives it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", max_length=200)
    preset: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] | None = None
    register_: bool | None = Field(default=None, alias="register")
    """``register:`` in the file (``BaseModel.register`` is taken)."""
    caller_id_header: CallerIdStyle | None = None
    codecs: tuple[str, ...] | None = None
    """Audio codecs in offer order (``AUTOCALL_CODECS`` overrides): a list or ``a,b``."""
    user: str | None = Field(default=None, min_length=1, max_length=64)
    password_env: str | None = None
    caller_id: str | None = None
    echo: str | None = Field(default=None, min_length=1, max_length=200)
    docs: list[str] = Field(default_factory=list, max_length=10)
    """Where a preset's facts come from (public documentation pages)."""

    @field_validator(*_WHOLE)
    @classmethod
    def _whole(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, what = _WHOLE[str(info.field_name)]
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} {what}")
        return value

    @field_validator("codecs", mode="before")
    @classmethod
    def _codecs(cls, value: object) -> object:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if isinstance(value, str):
            try:
                return parse_codecs(value, where="codecs")
            except ValueError as exc:
                raise ValueError(str(exc).replace(f"codecs={value!r}: ", "")) from None
        return value

    @field_validator("caller_id_header", mode="before")
    @classmethod
    def _style(cls, value: object) -> object:
        return parse_style(value) if isinstance(value, str) else value

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        return check_caller_id(value) if value is not None else None

    @field_validator("echo")
    @classmethod
    def _echo(cls, value: str | None) -> str | None:
        return check_echo(value) if value is not None else None

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("control characters are not allowed here")
        return value


def check_echo(value: str) -> str:
    """An echo number (a SIP URI user: ``600``, ``*43``) or a ``sip:``/``sips:`` URI;
    ValueError saying why not."""
    if value.split(":", 1)[0].lower() in ("sip", "sips"):
        URI.parse(value)  # its ValueError says what is wrong
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
            raise ValueError(f"{value!r}: a SIP URI has no spaces or control characters")
        return value
    if not _URI_USER.fullmatch(value):
        raise ValueError(
            f"{value!r} is neither a number (a SIP URI user such as 600 or *43) nor a sip: URI"
        )
    return value


@dataclass(frozen=True)
class Trunk:
    """A trunk ready to use: a preset or user file with its preset's values filled in."""

    name: str
    source: str
    """``preset`` (shipped with autocall) or ``user`` (the trunks folder, or a path)."""
    path: Path
    description: str
    host: str | None
    port: int | None
    transport: str
    register: bool
    caller_id_header: CallerIdStyle
    codecs: tuple[str, ...]
    user: str | None
    password_env: str | None
    caller_id: str | None
    echo: str | None
    docs: tuple[str, ...]


def user_dir() -> Path:
    """The folder of the user's trunk files: ``AUTOCALL_SIP_TRUNKS_DIR`` or ``trunks``."""
    import os

    return Path(os.environ.get(USER_DIR_ENV) or DEFAULT_USER_DIR)


def _files(folder: Path) -> dict[str, Path]:
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    except OSError:
        return {}
    return {p.stem: p for p in found}


def read_trunk_file(path: Path) -> TrunkFile:
    """Parse and validate one file; :class:`TrunkError` naming file:line:col."""
    from autocall.yamlfile import YamlFileError, read_yaml

    try:
        data, positions = read_yaml(path)
    except YamlFileError as exc:
        raise TrunkError([str(exc)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TrunkError(
            [
                f"{path}:1:1: error: a trunk file is a mapping (host:, transport:, "
                "register:, caller_id_header: …)"
            ]
        )
    try:
        return TrunkFile.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[int, int, str]] = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, (int, str)))
            missing = err["type"] == "missing"
            extra = err["type"] == "extra_forbidden"
            line, col = positions.locate(loc[:-1] if missing else loc, key=extra)
            dotted = ".".join(str(p) for p in loc) or "(top)"
            msg = str(err["msg"]).removeprefix("Value error, ")
            if extra and loc[-1] == "password":
                msg = (
                    "a password never goes in a trunk file: name the variable that "
                    "holds it with password_env: (e.g. password_env: PBX_PASSWORD)"
                )
            elif extra:
                msg = "unknown field" + _did_you_mean(str(loc[-1]))
            problems.append((line, col, f"{path}:{line}:{col}: error: {dotted}: {msg}"))
        raise TrunkError(text for _, _, text in sorted(problems)) from None


def _did_you_mean(name: str) -> str:
    import difflib

    known = [info.alias or name for name, info in TrunkFile.model_fields.items()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known fields: {', '.join(known)}"


def _resolve(name: str, path: Path, source: str, file: TrunkFile) -> Trunk:
    base = TrunkFile()
    if file.preset is not None:
        presets = _files(PRESETS_DIR)
        if file.preset not in presets:
            raise TrunkError(
                [
                    f"{path}:1:1: error: preset: no preset {file.preset!r}; "
                    f"presets: {', '.join(presets)}"
                ]
            )
        base = read_trunk_file(presets[file.preset])
    merged = base.model_copy(update=file.model_dump(exclude_unset=True, exclude={"preset"}))
    if file.preset is not None and not file.description:
        merged = merged.model_copy(update={"description": f"{file.preset}: {base.description}"})
    return Trunk(
        name=name,
        source=source,
        path=path,
        description=merged.description,
        host=merged.host,
        port=merged.port,
        transport=merged.transport or "udp",
        register=bool(merged.register_),
        caller_id_header=merged.caller_id_header or CallerIdStyle.FROM,
        codecs=merged.codecs or SUPPORTED,
        user=merged.user,
        password_env=merged.password_env,
        caller_id=merged.caller_id,
        echo=merged.echo,
        docs=tuple(merged.docs),
    )


def load_trunk(spec: str, folder: Path | None = None) -> Trunk:
    """The trunk named ``spec`` (user folder first, then presets) or the file ``spec``
    (a path ending in ``.yaml``/``.yml``); :class:`TrunkError` if none or unusable."""
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise TrunkError([f"{spec}: error: no such trunk file"])
        return _resolve(path.stem, path, "user", read_trunk_file(path))
    folder = user_dir() if folder is None else folder
    if not _NAME.fullmatch(spec):
        raise TrunkError(
            [
                f"trunk {spec!r}: not a trunk name (lower-case letters, digits, "
                ". _ -); `autocall sip trunks` lists them"
            ]
        )
    own = _files(folder)
    if spec in own:
        return _resolve(spec, own[spec], "user", read_trunk_file(own[spec]))
    presets = _files(PRESETS_DIR)
    if spec in presets:
        return _resolve(spec, presets[spec], "preset", read_trunk_file(presets[spec]))
    names = sorted(set(own) | set(presets))
    raise TrunkError(
        [
            f"trunk {spec!r}: no such trunk in {folder}/ nor among the presets; "
            f"known: {', '.join(names)}"
        ]
    )


def list_trunks(folder: Path | None = None) -> tuple[list[Trunk], list[str]]:
    """Every trunk (the user's, then presets they do not replace), and the problems of
    files that cannot be used (they are left out of the list, not fatal)."""
    folder = user_dir() if folder is None else folder
    own = _files(folder)
    trunks: list[Trunk] = []
    problems: list[str] = []
    for name, path in own.items():
        if not _NAME.fullmatch(name):
            problems.append(
                f"{path}: error: file name {name!r} is not a trunk name "
                "(lower-case letters, digits, . _ -)"
            )
            continue
        try:
            trunks.append(_resolve(name, path, "user", read_trunk_file(path)))
        except TrunkError as exc:
            problems.extend(exc.problems)
    for name, path in _files(PRESETS_DIR).items():
        if name not in own:
            trunks.append(_resolve(name, path, "preset", read_trunk_file(path)))
    return trunks, problems
