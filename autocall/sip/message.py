"""SIP messages (RFC 3261 §7, §20, §25): parse and serialise, sans-I/O.

Parsing is strict about structure and lenient about style: header names are
case-insensitive and may be compact (§7.3.3), folded lines are unfolded (§7.3.1),
comma-joined values are split outside quotes and angle brackets (§7.3.1), URIs may be
sip:, sips: or tel: (RFC 3966). Anything malformed raises ``ValueError`` with a reason,
never another exception, so a driver can answer 400 and go on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "Address",
    "Headers",
    "Message",
    "Request",
    "Response",
    "StreamParser",
    "URI",
    "Via",
    "CSeq",
    "canonical_name",
    "parse_message",
    "split_list",
    "parse_params",
    "REASONS",
    "reason_cause",
    "printable",
    "warning",
    "salvage_400",
]

MAX_MESSAGE = 65_535
MAX_HEADERS = 256

# §7.3.3 and IANA "Header Fields" registry: compact forms.
_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
    "x": "session-expires",
}
_CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "min-se": "Min-SE",
    "remote-party-id": "Remote-Party-ID",  # as draft-ietf-sip-privacy-04 §6 spells it
}
# Headers whose values are comma-separated lists (§7.3.1); others (dates, auth) are not.
_LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "content-encoding", "in-reply-to", "path", "service-route",
})

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 415: "Unsupported Media Type",
    420: "Bad Extension", 422: "Session Interval Too Small",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")


@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """``v`` → ``Via``, ``call-id`` → ``Call-ID``, ``x-foo-bar`` → ``X-Foo-Bar``."""
    low = name.strip().lower()
    low = _COMPACT.get(low, low)
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(part.capitalize() for part in low.split("-"))


def split_list(value: str) -> list[str]:
    """Split a comma-joined header value, respecting quotes and <…> (§7.3.1)."""
    if '"' not in value and "<" not in value:  # the fast path; quotes and <…> need a scan
        return [item.strip() for item in value.split(",") if item.strip()]
    return [item.strip() for item in _split_outside_quotes(value, ",", angles=True)
            if item.strip()]


def _split_outside_quotes(text: str, sep: str, *, angles: bool = False) -> list[str]:
    """``text`` split at ``sep`` outside quoted strings (and outside <…> with ``angles``)."""
    if '"' not in text and not (angles and "<" in text):
        return text.split(sep)
    parts: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    angle = 0
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif angles and not quoted and ch in "<>":
            angle = angle + 1 if ch == "<" else max(0, angle - 1)
        elif ch == sep and not quoted and angle == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if quoted:
        raise ValueError(f"unterminated quoted string in {text!r}")
    parts.append("".join(buf))
    return parts


def unquote(value: str) -> str:
    """Strip one level of quotes and backslash escapes (§25.1 quoted-string)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x;y"`` → ``{"a": "1", "b": None, "c": '"x;y"'}`` (names lower-cased)."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, eq, val = part.partition("=")
        name = name.strip().lower()
        if not name or not _TOKEN.match(name):
            raise ValueError(f"bad parameter name {name!r}")
        params[name] = val.strip() if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class URI:
    """A sip:, sips: or tel: URI (§19.1, RFC 3966)."""

    scheme: str = "sip"
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> URI:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or not rest:
            raise ValueError(f"URI without scheme: {text!r}")
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number or not re.match(r"^\+?[0-9A-Fa-f*#().\-]+$", number):
                raise ValueError(f"bad tel number in {text!r}")
            return cls("tel", number, "", None, None, parse_params(ptext) if ptext else {})
        if scheme not in ("sip", "sips"):
            raise ValueError(f"unsupported URI scheme {scheme!r}")
        rest, q, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        user = password = None
        if at:
            user, c2, pw = userinfo.partition(":")
            password = pw if c2 else None
            if not user:
                raise ValueError(f"empty user in {text!r}")
        hostport, _, ptext = hostpart.partition(";")
        host, port = _parse_hostport(hostport, text)
        return cls(scheme, user, host, port, password, parse_params(ptext) if ptext else {},
                   headers if q else None)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        out = self.scheme + ":"
        if self.user is not None:
            out += self.user
            if self.password is not None:
                out += ":" + self.password
            out += "@"
        out += _format_host(self.host)
        if self.port is not None:
            out += f":{self.port}"
        out += format_params(self.params)
        if self.headers is not None:
            out += "?" + self.headers
        return out

    @property
    def hostport(self) -> tuple[str, int]:
        """Where to send (no DNS SRV here: RFC 3263 lookups are the deployment's job)."""
        default = 5061 if self.scheme == "sips" else 5060
        return self.host, self.port or default

    def copy(self, **changes: object) -> URI:
        data = {**self.__dict__, "params": dict(self.params), **changes}
        return URI(**data)


def _parse_hostport(hostport: str, whole: str) -> tuple[str, int | None]:
    hostport = hostport.strip()
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 reference in {whole!r}")
        host, tail = hostport[1:end], hostport[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError(f"junk after IPv6 host in {whole!r}")
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host or not re.match(r"^[A-Za-z0-9\-._:]+$", host):
        raise ValueError(f"bad host {host!r} in {whole!r}")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text!r} in {whole!r}")
        port = int(port_text)
    return host, port


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class Address:
    """name-addr / addr-spec with header parameters: From, To, Contact, Route… (§20.10)."""

    uri: URI
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        if text == "*":
            raise ValueError("wildcard Contact is not an address")
        lt = -1
        display: str | None = None
        if text.startswith('"'):
            i, escaped = 1, False
            while i < len(text):
                ch = text[i]
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    break
                i += 1
            else:
                raise ValueError(f"unterminated display name in {text!r}")
            display = unquote(text[: i + 1])
            lt = text.find("<", i + 1)
            if lt < 0:
                raise ValueError(f"quoted display name without <uri> in {text!r}")
        else:
            lt = text.find("<")
            if lt >= 0:
                display = text[:lt].strip() or None
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError(f"missing '>' in {text!r}")
            uri = URI.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise ValueError(f"junk after '>' in {text!r}")
            return cls(uri, display, parse_params(rest) if rest else {})
        # addr-spec form: parameters after the URI belong to the header (§20.10).
        uri_text, _, ptext = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise ValueError(f"addr-spec with ?/, must use <…>: {text!r}")
        return cls(URI.parse(uri_text), None, parse_params(ptext) if ptext else {})

    def __str__(self) -> str:
        name = f"{quote(self.display)} " if self.display else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


@dataclass
class Via:
    """One Via hop (§20.42): transport, sent-by and parameters (branch, rport, received)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", text)
        if not m:
            raise ValueError(f"bad Via {text!r}")
        host, port = _parse_hostport(m.group(2), text)
        return cls(m.group(1).upper(), host, port, parse_params(m.group(3) or ""))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        host = _format_host(self.host)
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN.match(parts[1]):
            raise ValueError(f"bad CSeq {text!r}")
        number = int(parts[0])
        if number >= 2**31:  # §8.1.1.5: less than 2**31
            raise ValueError(f"CSeq number too large: {text!r}")
        return cls(number, parts[1].upper())

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


class Headers:
    """Ordered, case-insensitive multi-map with canonical names."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        item = (canonical_name(name), str(value))
        if first:
            self._items.insert(0, item)
        else:
            self._items.append(item)

    def set(self, name: str, value: str) -> None:
        key = canonical_name(name)
        self.remove(key)
        self._items.append((key, str(value)))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """All values, comma-joined lists split into items for list headers."""
        key = canonical_name(name)
        values = [v for n, v in self._items if n == key]
        if key.lower() in _LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h


class Message:
    """Common part of requests and responses."""

    headers: Headers
    body: bytes

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # Typed accessors; each raises ValueError if the header is missing or malformed.
    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if not value:
            raise ValueError(f"missing {name}")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self._required("CSeq"))

    @property
    def from_(self) -> Address:
        return Address.parse(self._required("From"))

    @property
    def to(self) -> Address:
        return Address.parse(self._required("To"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise ValueError("missing Via")
        return Via.parse(values[0])

    @property
    def contact(self) -> Address | None:
        values = self.headers.get_all("Contact")
        return Address.parse(values[0]) if values and values[0].strip() != "*" else None

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = [self._start_line()]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def validate(self) -> None:
        """Check the mandatory headers of §8.1.1 (ValueError with the first problem)."""
        _ = self.call_id, self.from_, self.to, self.top_via
        cseq = self.cseq
        if isinstance(self, Request) and cseq.method != self.method and self.method != "ACK":
            raise ValueError(f"CSeq method {cseq.method} does not match {self.method}")
        if isinstance(self, Request) and self.method == "ACK" and cseq.method != "ACK":
            raise ValueError("ACK with a CSeq method other than ACK")
        for name in ("Max-Forwards", "Expires"):  # §20.22, §20.19: 1*DIGIT
            value = self.headers.get(name)
            if value is not None and not (value.strip().isascii() and value.strip().isdigit()):
                raise ValueError(f"bad {name} {value[:20]!r}")


class Request(Message):
    def __init__(self, method: str, uri: URI | str, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method.upper()
        self.uri = uri if isinstance(uri, URI) else URI.parse(uri)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _split_head(data: bytes) -> tuple[str, list[str], bytes]:
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")
        sep = 2
    if end < 0:
        raise ValueError("no blank line after headers")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"headers are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = head.replace("\r\n", "\n").split("\n")
    start, raw = lines[0], lines[1:]
    headers: list[str] = []
    for line in raw:
        if line[:1] in (" ", "\t"):  # §7.3.1 folding
            if not headers:
                raise ValueError("continuation line before any header")
            headers[-1] += " " + line.strip()
        else:
            headers.append(line)
    return start, headers, data[end + sep :]


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one framed from a stream)."""
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message larger than {MAX_MESSAGE} bytes")
    data = data.lstrip(b"\r\n")  # §7.5: tolerate leading CRLFs
    if not data:
        raise ValueError("empty message")
    start, raw_headers, body = _split_head(data)
    if len(raw_headers) > MAX_HEADERS:
        raise ValueError(f"more than {MAX_HEADERS} header lines")
    headers = Headers()
    for line in raw_headers:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise ValueError(f"bad header line {line[:60]!r}")
        headers.add(name, value.strip())
    length_text = headers.get("Content-Length")
    if length_text is not None:
        length_text = length_text.strip()
        if not length_text.isdigit() or len(length_text) > 6:
            raise ValueError(f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > len(body):
            raise ValueError(f"body shorter ({len(body)}) than Content-Length ({length})")
        body = body[:length]
    elif stream:
        raise ValueError("Content-Length is required on stream transports (§18.3)")
    msg: Request | Response
    if m := _STATUS_LINE.match(start):
        reason = m.group(2)
        if any(ord(c) < 32 and c != "\t" for c in reason):
            raise ValueError("control character in reason phrase")
        msg = Response(int(m.group(1)), reason, headers, body)
    elif m := _REQUEST_LINE.match(start):
        msg = Request(m.group(1), URI.parse(m.group(2)), headers, body)
    else:
        raise ValueError(f"bad start line {start[:60]!r}")
    return msg


def reason_cause(msg: Message, protocol: str = "Q.850") -> int | None:
    """The cause of a Reason header (RFC 3326 §2) for ``protocol``, e.g. Q.850 cause 17."""
    for value in msg.headers.get_all("Reason"):
        for item in split_list(value):
            proto, _, ptext = item.partition(";")
            if proto.strip().upper() != protocol.upper():
                continue
            try:
                cause = parse_params(ptext).get("cause")
            except ValueError:
                return None
            return int(cause) if cause and cause.isdigit() else None
    return None


class StreamParser:
    """Frames messages on TCP by Content-Length (§18.3); ``feed`` returns complete ones.

    A message larger than ``max_message`` is refused (ValueError) as soon as its
    Content-Length says so, before its body is buffered: a stranger announcing 990 KB and
    sending it slowly must not make us hold it.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_message = max_message

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held (0 between messages)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Request | Response]:
        self._buf += data
        out: list[Request | Response] = []
        while True:
            while self._buf[:2] == b"\r\n":  # keep-alive CRLFs (RFC 5626 §3.5.1)
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.max_message:
                    raise ValueError(f"header block larger than {self.max_message} bytes")
                return out
            head = bytes(self._buf[: end + 4])
            m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,6})[ \t]*\r?$", head)
            if not m:
                raise ValueError("Content-Length is required on stream transports (§18.3)")
            total = end + 4 + int(m.group(1))
            if total > self.max_message:
                raise ValueError(f"message of {total} bytes is larger than the "
                                 f"{self.max_message}-byte limit")
            if len(self._buf) < total:
                return out
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            out.append(parse_message(frame, stream=True))


def printable(text: str, limit: int = 120) -> str:
    """One line of printable ASCII (what a stranger sent, or an exception about it, may be
    anything), cut to ``limit``."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def warning(reason: str) -> str:
    """A ``Warning`` value saying why we refused (RFC 3261 §20.43: 399 = miscellaneous;
    the warn-text is a quoted string, so quotes and backslashes are replaced too)."""
    text = re.sub(r'["\\]', "?", printable(reason))
    return f'399 autocall "{text}"'


def salvage_400(raw: bytes, reason: str) -> bytes | None:
    """A 400 for a request we could not parse, built from whatever header lines survive
    (None for a response, an ACK (§17.2.1) or too little to route the answer)."""
    head = raw.decode("utf-8", "replace").split("\r\n\r\n", 1)[0].split("\n")
    if not re.match(r"^[A-Z]+ \S+ SIP/2\.0", head[0]) or head[0].startswith("ACK "):
        return None
    wanted: dict[str, list[str]] = {"Via": [], "From": [], "To": [], "Call-ID": [], "CSeq": []}
    for line in head[1:]:
        name, colon, value = line.partition(":")
        key = canonical_name(name) if colon else ""
        if key in wanted:
            wanted[key].append(re.sub(r"[\x00-\x1f\x7f]", "", value.strip()))
    if not all(wanted.values()):
        return None
    lines = [f"SIP/2.0 400 {printable(reason)}", *(f"{k}: {v}" for k, vs in wanted.items()
                                                   for v in vs),
             f"Warning: {warning(reason)}", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
