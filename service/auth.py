"""The optional API key: `Authorization: Bearer <key>` on every route under /v1.

`RequestGuard` checks it before any of a request's body is read (an upload is neither
received nor decoded for a client without the key); the routes' `require_api_key` dependency
checks it again with the same function and declares it in the OpenAPI schema.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["PROTECTED_PREFIX", "UNAUTHORIZED", "is_authorized", "is_protected"]

PROTECTED_PREFIX = "/v1/"
UNAUTHORIZED = "missing or wrong API key"


def is_protected(path: str) -> bool:
    """Whether a request to `path` needs the key (when one is set)."""
    return path.startswith(PROTECTED_PREFIX)


def is_authorized(authorization: str | None, key: SecretStr | None) -> bool:
    """Whether an Authorization header value carries `key` as a Bearer token (any, if None)."""
    if key is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # compare_digest takes as long for a near miss as for a far one.
    return hmac.compare_digest(given.strip().encode(), key.get_secret_value().encode())
