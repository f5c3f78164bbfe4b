"""The FastAPI application: `create_app(settings)` builds it, `run(...)` serves it.

The lifespan loads the model once and starts its worker, which warms it up before /readyz
says ready. `run` (`wavenet serve`) serves it with the connection limits of
`service.server`; `uvicorn --factory service.app:create_app` serves it with settings from the
environment too, but with uvicorn's own protocol: no request-head timeout, header answer or
connection cap.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from torch import nn

from service.errors import install_error_handlers
from service.limits import RequestGuard
from service.metrics import ServiceMetrics
from service.routes import demo, f0, models, status, synthesis
from service.runtime import StartupError, load_pitch, load_served_model, start_runtime
from service.schemas import VocodeRequest
from service.server import uvicorn_config
from service.settings import Settings, settings_error
from wavenet.synthesis_f0 import SynthesisF0

__all__ = ["create_app", "run"]

log = logging.getLogger("service")

# Response headers a browser page on another origin may read (when CORS is on).
AUDIO_HEADERS = [
    "X-Sample-Rate",
    "X-Audio-Seconds",
    "X-Inference-Ms",
    "X-Queue-Ms",
    "X-F0-Source",
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model (unless one was given), start the worker; stop it on shutdown."""
    settings: Settings = app.state.settings
    state = app.state
    try:
        runtime = await run_in_threadpool(
            start_runtime, settings, state.preloaded_model, state.metrics, state.preloaded_pitch
        )
    except StartupError as error:
        log.error("%s", error)
        raise
    app.state.metrics.watch_queue(lambda: runtime.worker.depth)
    app.state.runtime = runtime
    log.info("serving %s (%s) on %s", runtime.info.name, runtime.info.kind, runtime.info.device)
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = app.state.metrics.serve(settings.metrics_port, app.state.host)
        log.info("serving /metrics on port %d", settings.metrics_port)
    try:
        yield
    finally:
        app.state.runtime = None
        if metrics_server is not None:
            await run_in_threadpool(metrics_server.shutdown)
            metrics_server.server_close()
        await run_in_threadpool(runtime.worker.stop)


def create_app(
    settings: Settings | None = None,
    model: nn.Module | None = None,
    host: str = "127.0.0.1",
    pitch: SynthesisF0 | None = None,
) -> FastAPI:
    """Build the app; the model is loaded when it starts (or `model` is served as given).

    Args:
        settings (Settings | None): Configuration; None reads it from the environment.
        model (nn.Module | None): An already loaded model to serve instead of `settings.model`.
        host (str): Address the API is served on; /metrics on its own port (when set) too.
        pitch (SynthesisF0 | None): A pitch-aware model's F0 handling, its predictor loaded;
            None loads the predictor of WAVENET_PITCH_MODEL when the model is pitch-aware.
    """
    settings = settings or Settings()
    logging.getLogger("service").setLevel(settings.log_level.upper())
    docs = {} if settings.docs else dict(docs_url=None, redoc_url=None, openapi_url=None)
    app = FastAPI(
        title="WaveNet vocoder",
        summary="Log-mel features (or an audio file) in, speech out.",
        version="0.1.0",
        lifespan=lifespan,
        **docs,
    )
    app.state.settings = settings
    app.state.host = host
    app.state.preloaded_model = model
    app.state.preloaded_pitch = pitch
    app.state.metrics = ServiceMetrics()
    app.state.runtime = None
    install_error_handlers(app)
    for router in (synthesis.router, f0.router, models.router, status.router, demo.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=demo.STATIC_DIR), name="static")
    app.add_middleware(RequestGuard, settings=settings, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=AUDIO_HEADERS,
        )
    # Added last, so it is outermost and also counts the answers of the request guard.
    instrumentator = Instrumentator(registry=app.state.metrics.registry).instrument(app)
    if settings.metrics_port is None:
        instrumentator.expose(app, endpoint="/metrics", tags=["health"])
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """The OpenAPI document, with the JSON body that /v1/vocode reads itself."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        _, definitions = models_json_schema(
            [(VocodeRequest, "validation")], ref_template="#/components/schemas/{model}"
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(definitions.get("$defs", {}))
        app.openapi_schema = document
    return app.openapi_schema


def run(model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (`wavenet serve`); exits with status 2 if it cannot start:
    invalid settings, a device that is not there, a checkpoint it cannot load or serve, a
    pitch-aware model without a usable pitch predictor."""
    import uvicorn

    overrides = {"model": Path(model)} if model is not None else {}
    try:
        settings = Settings(**overrides)
        logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(message)s")
        # Loaded before the server starts, so a bad path or device is one line and exit 2.
        loaded = load_served_model(settings)
        pitch = load_pitch(settings, loaded)
    except ValidationError as error:
        _exit(settings_error(error))
    except StartupError as error:
        _exit(str(error))
    app = create_app(settings, model=loaded, host=host, pitch=pitch)
    uvicorn.Server(uvicorn_config(app, settings, host, port)).run()


def _exit(message: str) -> NoReturn:
    print(f"wavenet serve: error: {message}", file=sys.stderr)
    raise SystemExit(2)
