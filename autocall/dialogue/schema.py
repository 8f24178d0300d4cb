"""The prompt-tree format as pydantic models, and its JSON Schema for editors.

A tree is a YAML mapping with a ``start`` node id and ``nodes``: each node is a mapping
holding exactly one verb key (``say``, ``play``, ``menu``, ``gather``, ``record``,
``transfer``, ``webhook``, ``set``, ``branch``, ``hours``, ``goto``, ``pause``,
``hangup``) plus that verb's routing keys (``next``, ``on_failure``, ``else``, ``open``,
``closed``). One verb per node keeps a tree readable as a flow chart and lets the
loader name the exact key that is wrong.

Prompts (``say`` nodes and every ``prompt``/``invalid``/``no_input`` field) are a text, a
``{say: text, language, voice}`` or ``{play: file}`` mapping, or a list of those.
Texts are templates: ``{first_name}`` is filled from the call's variables.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

VERBS: tuple[str, ...] = (
    "say",
    "play",
    "menu",
    "gather",
    "record",
    "transfer",
    "webhook",
    "set",
    "branch",
    "hours",
    "goto",
    "pause",
    "hangup",
)
"""Node verbs; a node holds exactly one of these keys."""

BUILTIN_OUTCOMES: tuple[str, ...] = (
    "completed",
    "opt-out",
    "transferred",
    "transfer-failed",
    "no-input",
    "invalid-input",
    "caller-hangup",
    "error",
    # answering-machine detection (issue 16), spelled as the campaign's retry outcomes
    "machine",
    "left-message",
    "fax",
)
"""Outcome labels every tree may use; ``opt-out`` adds the number to the do-not-call list.

Any other ``hangup:`` label must be declared in the tree's ``outcomes:`` list, so a typo
(``optout``) is an error instead of a caller silently never reaching the DNC list.
"""

OUTCOME_PATTERN = r"^[a-z][a-z0-9-]*$"
MENU_KEYS = frozenset("0123456789*#")
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MENU_KEY_PATTERN = r"^[0-9*#]$"
URL_PATTERN = r"^https?://"
NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
MenuKey = Annotated[str, Field(pattern=MENU_KEY_PATTERN)]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _key(key: object, info: ValidationInfo) -> object:
    """One key; YAML reads ``1`` as a number, and designers should not have to quote it."""
    if isinstance(key, int):
        key = str(key)
    if isinstance(key, str) and key not in MENU_KEYS:
        raise ValueError(f"{info.field_name} must be one of 0-9, * or #")
    return key


def _regex(pattern: str | None, info: ValidationInfo) -> str | None:
    """A field that must be a valid regular expression (checked once, at load)."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{info.field_name} is not a valid regular expression: {exc}") from exc
    return pattern


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


TtsEngineName = Literal["gtts", "piper", "espeak", "espeak-ng"]

_TTS = (
    "TTS engines to try in this order, e.g. [piper, espeak]: the first that speaks the "
    "prompt renders it. Unset: the node's, else the tree's, else AUTOCALL_TTS "
    "(gtts, piper, espeak)."
)


def _tts_order(order: list[str] | None) -> list[str] | None:
    """An engine order names each engine once (``espeak`` and ``espeak-ng`` are one)."""
    if order is None:
        return None
    seen: set[str] = set()
    for name in order:
        key = "espeak" if name == "espeak-ng" else name
        if key in seen:
            raise ValueError(f"tts names {key!r} twice ({name!r}); list each engine once")
        seen.add(key)
    return order


TtsOrder = Annotated[list[TtsEngineName], Field(min_length=1, description=_TTS)]


class SayPrompt(_Model):
    """Text spoken by TTS; ``language``/``voice``/``tts`` default to the node's and tree's."""

    say: str
    language: str | None = None
    voice: str | None = None
    tts: TtsOrder | None = None

    _order = field_validator("tts")(_tts_order)


class PlayPrompt(_Model):
    """An audio file, relative to the tree file."""

    play: str


PromptItem = str | SayPrompt | PlayPrompt
Prompts = PromptItem | list[PromptItem]


def prompt_items(prompts: Prompts | None) -> list[SayPrompt | PlayPrompt]:
    """Normalise any prompt shape to a list of Say/Play prompts."""
    if prompts is None:
        return []
    raw = prompts if isinstance(prompts, list) else [prompts]
    return [SayPrompt(say=p) if isinstance(p, str) else p for p in raw]


# --- verbs -------------------------------------------------------------------------


_SKIPPABLE = (
    "false: keys neither skip this message nor carry over to the next menu "
    "(legal notices); keys typed ahead before it are dropped too."
)
# StrictBool: for a legal notice `skippable: no` or `0` is an error, not a guess.


class SayNode(_Model):
    say: Prompts
    language: str | None = None
    voice: str | None = None
    tts: TtsOrder | None = None
    skippable: StrictBool = Field(True, description=_SKIPPABLE)
    next: NodeId | None = None

    _order = field_validator("tts")(_tts_order)


class PlayNode(_Model):
    play: str | list[str]
    skippable: StrictBool = Field(True, description=_SKIPPABLE)
    next: NodeId | None = None


def unskippable(node: object) -> bool:
    """True for a say/play message marked ``skippable: false``."""
    return isinstance(node, SayNode | PlayNode) and not node.skippable


class MenuItem(_Model):
    """One choice: where it goes and, for speech, the phrases that select it."""

    next: NodeId
    say: list[str] = Field(default_factory=list, description="Phrases a recogniser may return.")


class MenuBody(_Model):
    prompt: Prompts
    items: dict[MenuKey, NodeId | MenuItem] = Field(min_length=1, max_length=12)
    invalid: Prompts | None = "Sorry, that is not a valid choice."
    no_input: Prompts | None = "Sorry, I did not hear a choice."
    retries: int = Field(2, ge=0, le=10, description="Re-prompts after the first try.")
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds to wait for a key.")
    repeat_key: str | None = Field(None, description="Key that plays the prompt again.")
    default: NodeId | None = Field(None, description="Where to go when nothing is pressed.")
    speech: bool = False
    min_confidence: float = Field(0.0, ge=0, le=1)
    variable: str | None = Field(
        None, pattern=VARIABLE_PATTERN, description="Stores the key chosen."
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        # YAML reads `1:` as an int key; designers should not have to quote digits.
        if isinstance(data, dict) and isinstance(data.get("items"), dict):
            data = dict(data)
            data["items"] = {str(k): v for k, v in data["items"].items()}
        return data

    _repeat_key = field_validator("repeat_key", mode="before")(_key)

    def item(self, key: str) -> MenuItem | None:
        value = self.items.get(key)
        if isinstance(value, str):
            return MenuItem(next=value)
        return value


class MenuNode(_Model):
    menu: MenuBody
    on_failure: NodeId | None = Field(None, description="After the last retry fails.")


class GatherBody(_Model):
    prompt: Prompts
    variable: str = Field(pattern=VARIABLE_PATTERN)
    min_digits: int = Field(1, ge=0, le=64)
    max_digits: int = Field(16, ge=1, le=64)
    terminator: str | None = "#"
    first_timeout: float = Field(5.0, gt=0, le=120)
    inter_timeout: float = Field(3.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=10)
    pattern: str | None = Field(None, description="Regular expression the answer must match.")
    invalid: Prompts | None = "Sorry, that is not valid."
    no_input: Prompts | None = "Sorry, I did not get that."
    speech: bool = False
    grammar: list[str] = Field(default_factory=list, description="Hints for the recogniser.")
    min_confidence: float = Field(0.0, ge=0, le=1)

    _compiles = field_validator("pattern")(_regex)
    _terminator = field_validator("terminator", mode="before")(_key)

    @model_validator(mode="after")
    def _bounds(self) -> GatherBody:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is larger than max_digits")
        return self


class GatherNode(_Model):
    gather: GatherBody
    next: NodeId | None = None
    on_failure: NodeId | None = None


class RecordBody(_Model):
    prompt: Prompts | None = None
    max_seconds: float = Field(120.0, gt=0, le=3600)
    beep: bool = True
    end_on_silence: float = Field(5.0, ge=0, description="Seconds of silence; 0 disables.")
    end_on_key: str | None = "#"
    variable: str = Field("recording", pattern=VARIABLE_PATTERN)


class RecordNode(_Model):
    record: RecordBody
    next: NodeId | None = None


_PBX_BLIND = re.compile(r"^#(\+?[0-9]+)#$")
_PBX_ATTENDED = re.compile(r"^\*(\+?[0-9]+)#$")
_TARGET = re.compile(r"^\+?[0-9]+$|^sip:[^\s{}]+$")


class TransferBody(_Model):
    target: str = Field(description="Extension, E.164 number or sip: URI; no templates.")
    mode: Literal["blind", "attended"] = "blind"
    announce: Prompts | None = Field(None, description="Said to the agent (attended).")
    timeout: float = Field(25.0, gt=0, le=300, description="Back to the caller after this.")

    @model_validator(mode="before")
    @classmethod
    def _pbx_habit(cls, data: Any) -> Any:
        if isinstance(data, int):
            data = str(data)
        if isinstance(data, str):
            return {"target": data}
        return data

    @model_validator(mode="after")
    def _split_pbx(self) -> TransferBody:
        # `#101#` is a blind transfer and `*101#` an attended one on most PBXs.
        for pattern, mode in ((_PBX_BLIND, "blind"), (_PBX_ATTENDED, "attended")):
            match = pattern.match(self.target)
            if match:
                object.__setattr__(self, "target", match.group(1))
                object.__setattr__(self, "mode", mode)
        if not _TARGET.match(self.target):
            raise ValueError(
                f"transfer target {self.target!r} must be digits (101, +4930…), #101#, *101# "
                "or a sip: URI"
            )
        return self


class TransferNode(_Model):
    transfer: TransferBody
    next: NodeId | None = Field(None, description="After a failed transfer, if no on_failure.")
    on_failure: NodeId | None = None


# RFC 9110 §5.1 field names; ``${ENV:NAME}`` in a value is read from the environment
# when the call runs, so a secret never sits in the YAML in clear.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
ENV_REF = re.compile(r"\$\{ENV:([A-Za-z_][A-Za-z0-9_]{0,127})\}")
_SET_BY_US = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                        "connection", "te", "upgrade", "keep-alive", "expect"})
_SECRET_NAMES = ("authorization", "cookie", "token", "key", "secret", "password", "auth",
                 "signature", "session", "credential")


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not re.match(HEADER_NAME_PATTERN, name):
            raise ValueError(f"header name {name!r} is not a valid HTTP field name "
                             "(letters, digits and !#$%&'*+.^_`|~- only)")
        if name.lower() in _SET_BY_US:
            raise ValueError(f"header {name!r} is set by autocall itself; remove it")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: a value may not contain line breaks")
        rest = ENV_REF.sub("", value)
        if "${" in rest:
            raise ValueError(f"header {name!r}: {value!r} has a malformed reference; "
                             "write ${ENV:NAME} with NAME an environment variable")
        if any(word in name.lower() for word in _SECRET_NAMES) and rest.strip(
                " ") not in ("", "Bearer", "Basic", "Token"):
            raise ValueError(
                f"header {name!r} holds a literal value that looks like a secret; put it "
                f"in an environment variable and write e.g. \"Bearer ${{ENV:CRM_TOKEN}}\"")
    return headers


def resolve_headers(headers: Mapping[str, str],
                    environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A webhook's headers with each ``${ENV:NAME}`` read from the environment now (at
    call time); KeyError(NAME) if one is not set: never sent with the placeholder."""
    return {name: ENV_REF.sub(lambda m: environ[m.group(1)], value)
            for name, value in headers.items()}


class WebhookBody(_Model):
    url: str = Field(pattern=URL_PATTERN)
    payload: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=30,
        description="HTTP headers; ${ENV:NAME} is read from the environment at call time "
        "(required for Authorization, tokens and keys).")
    timeout: float = Field(5.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=5)
    save: dict[str, str] = Field(
        default_factory=dict, description="variable: key of the JSON response body."
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)


class WebhookNode(_Model):
    webhook: WebhookBody
    next: NodeId | None = None
    on_failure: NodeId | None = Field(None, description="Fallback when the hook fails.")


class SetNode(_Model):
    set: dict[str, str | int | float | bool]
    next: NodeId | None = None

    @field_validator("set")
    @classmethod
    def _names(cls, values: dict[str, Any]) -> dict[str, Any]:
        for name in values:
            if not re.match(VARIABLE_PATTERN, name):
                raise ValueError(f"{name!r} is not a variable name")
        return values


class Condition(_Model):
    """A test on one variable; all given tests must hold."""

    var: str
    eq: str | int | float | None = None
    ne: str | int | float | None = None
    in_: list[str | int | float] | None = Field(None, alias="in")
    matches: str | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    empty: bool | None = None

    _compiles = field_validator("matches")(_regex)


class BranchCase(_Model):
    if_: Condition = Field(alias="if")
    next: NodeId


class BranchNode(_Model):
    branch: list[BranchCase] = Field(min_length=1)
    else_: NodeId | None = Field(None, alias="else")


_HOURS_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_days(spec: str) -> list[int]:
    """``mon-fri`` or ``sat`` or ``mon,wed`` → weekday numbers (Monday is 0)."""
    days: list[int] = []
    for part in spec.lower().split(","):
        part = part.strip()
        if "-" in part:
            first, last = (p.strip()[:3] for p in part.split("-", 1))
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(f"{spec!r} is not a day range like mon-fri")
            a, b = _DAYS.index(first), _DAYS.index(last)
            days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif part[:3] in _DAYS:
            days.append(_DAYS.index(part[:3]))
        else:
            raise ValueError(f"{spec!r} is not a day like mon, sat or mon-fri")
    return days


def parse_ranges(spec: str) -> list[tuple[int, int]]:
    """``09:00-12:00, 13:00-17:00`` → minute-of-day ranges."""
    ranges = []
    for part in spec.split(","):
        match = _HOURS_RANGE.match(part)
        if not match:
            raise ValueError(f"{spec!r} is not a time range like 09:00-17:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"{spec!r} holds an impossible time")
        ranges.append((h1 * 60 + m1, h2 * 60 + m2))
    return ranges


class HoursBody(_Model):
    timezone: str | None = Field(None, description="IANA zone; defaults to the tree's.")
    schedule: dict[str, str] = Field(description="days: ranges, e.g. mon-fri: 09:00-17:00")
    holidays: list[dt.date] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: dict[str, str]) -> dict[str, str]:
        for days, ranges in schedule.items():
            parse_days(days)
            parse_ranges(ranges)
        return schedule

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            _check_zone(zone)
        return zone


class HoursNode(_Model):
    hours: HoursBody
    open: NodeId
    closed: NodeId


class GotoNode(_Model):
    goto: NodeId


class PauseNode(_Model):
    pause: float = Field(gt=0, le=60)
    next: NodeId | None = None


class HangupBody(_Model):
    outcome: str = "completed"


class HangupNode(_Model):
    hangup: HangupBody | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("hangup"), str):
            return {**data, "hangup": {"outcome": data["hangup"]}}
        return data

    @property
    def outcome(self) -> str:
        return self.hangup.outcome if self.hangup else "completed"


def _verb_of(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [v for v in VERBS if v in value]
        return found[0] if len(found) == 1 else None
    if isinstance(value, BaseModel):
        for verb in VERBS:
            if verb in type(value).model_fields:
                return verb
    return None


Node = Annotated[
    Annotated[SayNode, Tag("say")]
    | Annotated[PlayNode, Tag("play")]
    | Annotated[MenuNode, Tag("menu")]
    | Annotated[GatherNode, Tag("gather")]
    | Annotated[RecordNode, Tag("record")]
    | Annotated[TransferNode, Tag("transfer")]
    | Annotated[WebhookNode, Tag("webhook")]
    | Annotated[SetNode, Tag("set")]
    | Annotated[BranchNode, Tag("branch")]
    | Annotated[HoursNode, Tag("hours")]
    | Annotated[GotoNode, Tag("goto")]
    | Annotated[PauseNode, Tag("pause")]
    | Annotated[HangupNode, Tag("hangup")],
    Discriminator(
        _verb_of,
        custom_error_type="node_verb",
        custom_error_message="a node needs exactly one verb: " + ", ".join(VERBS),
    ),
]

NODE_MODELS: dict[str, type[_Model]] = {
    "say": SayNode,
    "play": PlayNode,
    "menu": MenuNode,
    "gather": GatherNode,
    "record": RecordNode,
    "transfer": TransferNode,
    "webhook": WebhookNode,
    "set": SetNode,
    "branch": BranchNode,
    "hours": HoursNode,
    "goto": GotoNode,
    "pause": PauseNode,
    "hangup": HangupNode,
}


def _check_zone(zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {zone!r} (use an IANA name like Europe/Berlin)"
        ) from exc


class Tree(_Model):
    """One prompt tree (one YAML file)."""

    name: str | None = None
    description: str | None = None
    language: str = "en"
    voice: str | None = None
    voices: dict[str, str] = Field(
        default_factory=dict,
        description="A voice per language (BCP 47 tag: voice), e.g. {en: en_US-joe-medium, "
        "de: de_DE-thorsten-high}: a prompt in that language with no voice of its own or "
        "its node's speaks with it (before `voice`).",
    )
    tts: TtsOrder | None = None
    timezone: str = "UTC"
    start: NodeId
    machine: NodeId | None = Field(
        None,
        description="Where a call answered by a machine starts, once its greeting has ended "
        "(after the beep): the voicemail message, or a hangup node to leave none. Unset: "
        "the campaign's amd.on_machine (or `call --on-machine`) decides.",
    )
    contact_fields: list[str] | None = Field(
        None, description="Fields every contact provides; checked against templates."
    )
    outcomes: list[Annotated[str, Field(pattern=OUTCOME_PATTERN)]] = Field(
        default_factory=list,
        description="Outcome labels the tree's hangups use besides the built-ins "
        "(completed, opt-out, transferred, …), e.g. [confirmed, promised-payment].",
    )
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Defaults, overridden by contact fields."
    )
    transfer_targets: list[str] = Field(
        default_factory=list, description="Every number a transfer may reach (toll-fraud guard)."
    )
    max_steps: int = Field(500, ge=10, le=100_000)
    nodes: dict[NodeId, Node] = Field(min_length=1)

    _source: Path | None = PrivateAttr(None)

    _order = field_validator("tts")(_tts_order)

    def voice_for(self, language: str) -> str | None:
        """The tree's voice for *language*: ``voices`` (exact tag, then its primary
        language), else ``voice``."""
        wanted = language.replace("_", "-").lower()
        by_tag = {k.replace("_", "-").lower(): v for k, v in self.voices.items()}
        return by_tag.get(wanted) or by_tag.get(wanted.split("-")[0]) or self.voice

    @model_validator(mode="before")
    @classmethod
    def _targets_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("transfer_targets"), list):
            data = dict(data)
            data["transfer_targets"] = [
                str(t) if isinstance(t, int) and not isinstance(t, bool) else t
                for t in data["transfer_targets"]
            ]
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        _check_zone(zone)
        return zone

    @property
    def source(self) -> Path | None:
        """The file the tree was loaded from (audio paths are relative to it)."""
        return self._source

    def with_source(self, path: Path | None) -> Tree:
        self._source = path
        return self

    def resolve_audio(self, path: str) -> Path:
        candidate = Path(path)
        if candidate.is_absolute() or self._source is None:
            return candidate
        return self._source.parent / candidate


def machine_action(tree: Tree) -> Literal["message", "hangup"] | None:
    """What ``tree`` does on a machine: ``message`` (its ``machine:`` node plays after the
    beep), ``hangup`` (that node hangs up at once, through gotos), None (no ``machine:``)."""
    node_id = tree.machine
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        node = tree.nodes.get(node_id)
        if isinstance(node, HangupNode):
            return "hangup"
        node_id = node.goto if isinstance(node, GotoNode) else None
    return None if tree.machine is None else "message"


def allowed_transfer_targets(tree: Tree) -> set[str]:
    """Numbers/extensions a transfer in ``tree`` may reach, PBX codes stripped.

    The inbound server refuses any other destination, whatever the engine asks for.
    """
    allowed: set[str] = set()
    for raw in tree.transfer_targets:
        try:
            allowed.add(TransferBody.model_validate(raw).target)
        except ValidationError:
            continue  # `validate` reports it; a tree run unvalidated never dials it
    return allowed


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the tree format, for editor autocompletion.

    pydantic derives it from the models; the YAML shorthands that ``before`` validators
    accept (``transfer: "#101#"``, ``hangup: opt-out``, unquoted digit keys) are added
    here so editors do not flag what the loader takes.
    """
    schema = Tree.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "autocall prompt tree"
    defs = schema["$defs"]
    key = {"type": ["string", "integer"], "pattern": "^[0-9*#]$"}
    schema["properties"]["nodes"]["additionalProperties"] = False
    schema["properties"]["transfer_targets"]["items"] = {"type": ["string", "integer"]}
    defs["TransferNode"]["properties"]["transfer"] = {
        "anyOf": [
            {"type": ["string", "integer"], "description": "101, #101# (blind), *101# (attended)"},
            {"$ref": "#/$defs/TransferBody"},
        ]
    }
    defs["HangupNode"]["properties"]["hangup"] = {
        "anyOf": [
            {"type": "string", "description": "The outcome label, e.g. opt-out."},
            {"$ref": "#/$defs/HangupBody"},
            {"type": "null"},
        ]
    }
    defs["HangupNode"]["required"] = ["hangup"]
    defs["MenuBody"]["properties"]["items"]["propertyNames"] = {"pattern": "^[0-9*#]$"}
    for body, name in (("MenuBody", "repeat_key"), ("GatherBody", "terminator")):
        defs[body]["properties"][name] = {"anyOf": [key, {"type": "null"}]}
    return schema


class Edge(BaseModel):
    """A possible move from one node to another, with where the YAML names it."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    label: str
    path: tuple[str | int, ...]
    """YAML key path of the target, from the tree root."""


def edges(tree: Tree) -> list[Edge]:
    """Every explicit move in the tree, in file order (no implicit hang-ups)."""
    out: list[Edge] = []

    def add(source: str, target: str | None, label: str, *path: str | int) -> None:
        if target is not None:
            where = ("nodes", source, *path)
            out.append(Edge(source=source, target=target, label=label, path=where))

    for node_id, node in tree.nodes.items():
        if isinstance(node, MenuNode):
            for key, value in node.menu.items.items():
                if isinstance(value, str):
                    add(node_id, value, key, "menu", "items", key)
                else:
                    add(node_id, value.next, key, "menu", "items", key, "next")
            add(node_id, node.menu.default, "no key", "menu", "default")
            add(node_id, node.on_failure, "failed", "on_failure")
        elif isinstance(node, BranchNode):
            for i, case in enumerate(node.branch):
                add(node_id, case.next, _condition_label(case.if_), "branch", i, "next")
            add(node_id, node.else_, "else", "else")
        elif isinstance(node, HoursNode):
            add(node_id, node.open, "open", "open")
            add(node_id, node.closed, "closed", "closed")
        elif isinstance(node, GotoNode):
            add(node_id, node.goto, "", "goto")
        elif isinstance(node, HangupNode):
            continue
        else:
            label = {GatherNode: "ok", WebhookNode: "ok", TransferNode: "no answer"}.get(
                type(node), "")
            add(node_id, getattr(node, "next", None), label, "next")
            add(node_id, getattr(node, "on_failure", None), "failed", "on_failure")
    return out


def _condition_label(cond: Condition) -> str:
    parts = []
    for name in ("eq", "ne", "in_", "matches", "gt", "ge", "lt", "le", "empty"):
        value = getattr(cond, name)
        if value is not None:
            op = {"eq": "==", "ne": "!=", "in_": "in", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
            parts.append(f"{cond.var} {op.get(name, name)} {value}")
    return " and ".join(parts) or f"{cond.var} set"


WAITS_FOR_CALLER = (MenuNode, GatherNode, RecordNode)
"""Nodes that listen to the caller; a loop through none of them never ends by itself."""
ENDS_CALL = (HangupNode, TransferNode)


def prompt_fields(tree: Tree) -> Iterator[tuple[tuple[str | int, ...], Prompts | None]]:
    """Every prompt field of the tree with its YAML path, in file order."""
    for node_id, node in tree.nodes.items():
        base: tuple[str | int, ...] = ("nodes", node_id)
        if isinstance(node, SayNode):
            yield (*base, "say"), node.say
        elif isinstance(node, MenuNode | GatherNode):
            verb = "menu" if isinstance(node, MenuNode) else "gather"
            body = node.menu if isinstance(node, MenuNode) else node.gather
            yield (*base, verb, "prompt"), body.prompt
            yield (*base, verb, "invalid"), body.invalid
            yield (*base, verb, "no_input"), body.no_input
        elif isinstance(node, RecordNode):
            yield (*base, "record", "prompt"), node.record.prompt
        elif isinstance(node, TransferNode):
            yield (*base, "transfer", "announce"), node.transfer.announce


def spoken_prompts(tree: Tree) -> list[tuple[str, SayPrompt]]:
    """(node id, text prompt with language, voice and engine order resolved) for every text
    the tree says.

    Texts are as written: templated ones (``{first_name}``) can only be rendered per call.
    """
    out: list[tuple[str, SayPrompt]] = []
    for path, prompts in prompt_fields(tree):
        node_id = str(path[1])
        node = tree.nodes[node_id]
        language = getattr(node, "language", None) or tree.language
        voice = getattr(node, "voice", None)
        tts = getattr(node, "tts", None) or tree.tts
        for item in prompt_items(prompts):
            if isinstance(item, SayPrompt):
                lang = item.language or language
                resolved = SayPrompt(
                    say=item.say,
                    language=lang,
                    voice=item.voice or voice or tree.voice_for(lang),
                    tts=item.tts or tts,
                )
                out.append((node_id, resolved))
    return out
