"""GET /v1/models: what the service serves."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ApiKey, RuntimeDep
from service.schemas import ModelList

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[ApiKey])


@router.get("/models", response_model=ModelList, summary="The served model")
async def list_models(runtime: RuntimeDep) -> ModelList:
    """Name, kind, sample rate, feature spec, speakers, receptive field, size."""
    return ModelList(models=[runtime.info])
