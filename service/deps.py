"""Dependencies shared by the routes: the running model, and the optional API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from service.auth import UNAUTHORIZED, is_authorized
from service.runtime import Runtime
from service.settings import Settings

__all__ = ["ApiKey", "RuntimeDep", "SettingsDep", "get_runtime", "require_api_key"]

_bearer = HTTPBearer(auto_error=False, description="The API key, when the service has one.")


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_runtime(request: Request) -> Runtime:
    """The loaded model and its worker; 503 while the service is starting or stopping."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(503, "the model is not loaded yet", headers={"Retry-After": "1"})
    return runtime


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries `Authorization: Bearer <key>` (when a key is set).

    `RequestGuard` has already refused such a request before reading its body; this states
    the scheme in the OpenAPI schema, and holds for an app served without the guard.
    """
    key = request.app.state.settings.api_key
    if not is_authorized(request.headers.get("authorization"), key):
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKey = Depends(require_api_key)
