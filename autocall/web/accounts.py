"""Users, API tokens and the audit log, in the store (migration 0003).

Passwords are argon2 hashes; a token is shown once and only its SHA-256 is kept (a
token is 256 random bits, so a fast hash is enough and lookups stay one index probe).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import Column, Table
from sqlalchemy.types import DateTime, Integer, String, Text

from autocall.campaign.db import metadata, reading

users = Table(
    "autocall_users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("disabled_at", DateTime),
)

tokens = Table(
    "autocall_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_by", String(100)),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
)

audit_log = Table(
    "autocall_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(60), nullable=False),
    Column("subject", String(200)),
    Column("detail", Text, nullable=False, default="{}"),
)

TOKEN_PREFIX = "ac_"
_hasher = PasswordHasher()


class Role(StrEnum):
    """DESIGN.md §4: admin does everything; marketer runs campaigns, contacts and
    reports; designer edits trees and audio (and never sees contacts); viewer reads."""

    ADMIN = "admin"
    MARKETER = "marketer"
    DESIGNER = "designer"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a console user or an API token, with its one role."""

    kind: str  # "user" or "token"
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log and idempotency keys name this principal."""
        return f"{self.kind}:{self.name}"


class AccountError(ValueError):
    """A user or token that cannot be made (duplicate name, unknown role)."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def role_of(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountError(f"unknown role {value!r}: use one of "
                           f"{', '.join(r.value for r in Role)}") from None


def add_user(engine: Engine, name: str, role: Role, password: str) -> None:
    if not name.strip() or len(name) > 100:
        raise AccountError("a user name is 1 to 100 characters")
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
    try:
        with engine.begin() as conn:
            conn.execute(insert(users).values(name=name, role=role.value,
                                              password_hash=_hasher.hash(password),
                                              created_at=_now()))
    except IntegrityError:
        raise AccountError(f"user {name!r} exists") from None


def check_password(engine: Engine, name: str, password: str) -> Principal | None:
    """The user, if the password is theirs (and they are not disabled)."""
    with reading(engine) as conn:
        row = conn.execute(select(users).where(users.c.name == name,
                                               users.c.disabled_at.is_(None))).first()
    if row is None:
        _hasher.hash(password)  # the same time for an unknown name as for a wrong password
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return Principal("user", row.name, role_of(row.role))


def user_principal(engine: Engine, name: str) -> Principal | None:
    """A logged-in user's principal as it is now (a disabled user or changed role counts)."""
    with reading(engine) as conn:
        row = conn.execute(select(users.c.name, users.c.role).where(
            users.c.name == name, users.c.disabled_at.is_(None))).first()
    return None if row is None else Principal("user", row.name, role_of(row.role))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: Role, created_by: str | None = None) -> str:
    """A new API token; the returned text is the only copy there will ever be."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(tokens).values(
            name=name, role=role.value, token_hash=_digest(token), prefix=token[:10],
            created_by=created_by, created_at=_now()))
    return token


LAST_USED_EVERY = timedelta(seconds=60)
"""A token's ``last_used_at`` is written at most this often: a CRM polling the API must
not turn every read into a write (on SQLite it would queue behind, and hold up, the
dialer's own writes)."""


def token_principal(engine: Engine, token: str, now: datetime | None = None) -> Principal | None:
    """The token's principal (None: unknown or revoked). Its ``last_used_at`` is written
    at most once a :data:`LAST_USED_EVERY` (a CRM polling at 50 requests/s would otherwise
    write, and take the store's write lock, on every request); a read otherwise."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(token)
    at = _now() if now is None else now.astimezone(UTC).replace(tzinfo=None)
    live = (tokens.c.token_hash == digest) & tokens.c.revoked_at.is_(None)
    with reading(engine) as conn:
        row = conn.execute(select(tokens.c.name, tokens.c.role, tokens.c.last_used_at)
                           .where(live)).first()
    if row is None:
        return None
    if row.last_used_at is None or at - row.last_used_at >= LAST_USED_EVERY:
        stale = tokens.c.last_used_at.is_(None) | (tokens.c.last_used_at <= at - LAST_USED_EVERY)
        with engine.begin() as conn:  # conditional: of requests racing, one writes
            conn.execute(update(tokens).where(live, stale).values(last_used_at=at))
    return Principal("token", row.name, role_of(row.role))


def audit(conn: Connection, actor: Principal | str, action: str, subject: str | None = None,
          **detail: Any) -> None:
    """One audit line, in the caller's transaction (so it exists iff the change does)."""
    name = actor.actor if isinstance(actor, Principal) else actor
    conn.execute(insert(audit_log).values(at=_now(), actor=name, action=action,
                                          subject=subject, detail=json.dumps(detail)))


@dataclass(frozen=True)
class UserRow:
    name: str
    role: Role
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    role: Role
    prefix: str  # the first characters, to recognise a token without revealing it
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    subject: str | None
    detail: dict[str, Any]


def list_users(engine: Engine) -> list[UserRow]:
    with reading(engine) as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
    return [UserRow(r.name, role_of(r.role), r.created_at, r.disabled_at is not None)
            for r in rows]


def list_tokens(engine: Engine) -> list[TokenRow]:
    with reading(engine) as conn:
        rows = conn.execute(select(tokens).order_by(tokens.c.id)).all()
    return [TokenRow(r.id, r.name, role_of(r.role), r.prefix, r.created_by, r.created_at,
                     r.last_used_at, r.revoked_at) for r in rows]


def revoke_tokens(engine: Engine, name: str, actor: Principal | str) -> int:
    """Revoke every live token called ``name`` (audited); how many were revoked."""
    with engine.begin() as conn:
        done = conn.execute(update(tokens).where(tokens.c.name == name,
                                                 tokens.c.revoked_at.is_(None))
                            .values(revoked_at=_now())).rowcount
        if done:
            audit(conn, actor, "token.revoke", name, count=done)
    return int(done)


def audit_lines(engine: Engine, limit: int = 100, offset: int = 0) -> list[AuditLine]:
    """The newest lines first."""
    with reading(engine) as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc())
                            .limit(limit).offset(offset)).all()
    return [AuditLine(r.at, r.actor, r.action, r.subject, json.loads(r.detail or "{}"))
            for r in rows]
