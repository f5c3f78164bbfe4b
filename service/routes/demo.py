"""GET /: the demo page (static files, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["demo"])


@router.get("/", response_class=FileResponse, summary="Demo page")
async def demo_page() -> FileResponse:
    """Upload or record a clip, resynthesize it, and compare the two."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
