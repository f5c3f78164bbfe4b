"""GET /livez and GET /readyz, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health, summary="The process is up")
async def livez() -> Health:
    """200 while the process serves HTTP at all."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready (yet)."}},
    summary="The model is loaded, warmed up and its worker running",
)
async def readyz(request: Request) -> Health | JSONResponse:
    """200 once the warm-up batch has run; 503 before, after a failure, or when stopping."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        problem = "the model is not loaded"
    elif runtime.worker.warmup_error is not None:
        problem = runtime.worker.warmup_error
    elif not runtime.worker.alive:
        problem = "the inference worker is not running"
    elif not runtime.worker.ready.is_set():
        problem = "warming up"
    else:
        return Health(status="ready")
    body = Health(status="not ready", detail=problem).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
