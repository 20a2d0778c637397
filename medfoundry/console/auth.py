"""Who is asking, and may they: API tokens (from a file or a Kubernetes Secret) or a trusted identity header set by
an OIDC proxy (oauth2-proxy's X-Forwarded-User / X-Forwarded-Email), roles `viewer` and `operator`, signed session
cookies, and CSRF tokens bound to the session for every state-changing request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("viewer", "operator")
SESSION_COOKIE = "mf_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600


class AuthConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    user: str  # "" for an anonymous visitor
    role: str  # "" | viewer | operator
    via: str = ""  # token | proxy | bearer

    @property
    def authenticated(self) -> bool:
        return bool(self.user)

    def can(self, role: str) -> bool:
        return self.role in ROLES and ROLES.index(self.role) >= ROLES.index(role)


@dataclass
class TokenEntry:
    name: str
    role: str
    digest: str  # sha256 of the token: the token itself is never kept in memory longer than loading


def load_tokens(path: Path) -> list[TokenEntry]:
    """One token per line: `TOKEN [ROLE [NAME]]` (role defaults to operator); `#` starts a comment. A mounted
    Kubernetes Secret key works as the file."""
    entries = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        token, role = parts[0], parts[1] if len(parts) > 1 else "operator"
        if role not in ROLES:
            raise AuthConfigError(f"{path}:{number}: role {role!r} is not one of {', '.join(ROLES)}")
        if len(token) < 16:
            raise AuthConfigError(f"{path}:{number}: token shorter than 16 characters")
        name = parts[2] if len(parts) > 2 else f"{role}-{hashlib.sha256(token.encode()).hexdigest()[:6]}"
        entries.append(TokenEntry(name, role, hashlib.sha256(token.encode()).hexdigest()))
    if not entries:
        raise AuthConfigError(f"{path}: no token in the file")
    return entries


@dataclass
class AuthSettings:
    mode: str = "token"  # token | proxy
    tokens: list[TokenEntry] = field(default_factory=list)
    proxy_user_header: str = "x-forwarded-user"
    proxy_email_header: str = "x-forwarded-email"
    operators: frozenset[str] = frozenset()  # proxy mode: users/emails with the operator role; others are viewers
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    secure_cookies: bool = False

    def check_token(self, token: str) -> TokenEntry | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for entry in self.tokens:
            if hmac.compare_digest(entry.digest, digest):
                return entry
        return None

    # ------------------------------------------------------------------ signed session cookie
    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def encode_session(self, sid: str, user: str = "", role: str = "") -> str:
        payload = base64.urlsafe_b64encode(
            json.dumps({"sid": sid, "user": user, "role": role, "exp": int(time.time()) + SESSION_SECONDS}).encode()
        )
        return payload.decode() + "." + self._sign(payload)

    def decode_session(self, value: str | None) -> dict | None:
        if not value or "." not in value:
            return None
        payload, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(payload.encode()), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except ValueError:
            return None
        return data if data.get("exp", 0) > time.time() else None

    def csrf_token(self, sid: str) -> str:
        return self._sign(f"csrf:{sid}".encode())

    def csrf_ok(self, sid: str, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token(sid), presented)

    # ------------------------------------------------------------------ identity of a request
    def identify(self, headers, session: dict | None) -> Identity:
        if self.mode == "proxy":
            user = headers.get(self.proxy_user_header, "").strip()
            email = headers.get(self.proxy_email_header, "").strip()
            who = email or user
            if not who:
                return Identity("", "")
            role = "operator" if (user in self.operators or email in self.operators) else "viewer"
            return Identity(who, role, "proxy")
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            entry = self.check_token(bearer[7:].strip())
            return Identity(entry.name, entry.role, "bearer") if entry else Identity("", "")
        if session and session.get("user"):
            return Identity(session["user"], session.get("role", "viewer"), "token")
        return Identity("", "")
