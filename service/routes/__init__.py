"""HTTP routes, one router per file."""

from service.routes import demo, models, status, synthesis

__all__ = ["demo", "models", "status", "synthesis"]
