"""HTTP routes, one router per file."""

from service.routes import demo, f0, models, status, synthesis

__all__ = ["demo", "f0", "models", "status", "synthesis"]
