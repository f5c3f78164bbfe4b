"""The HTTP service: a FastAPI app that vocodes log-mel features (or an audio file) into speech.

`service.app.create_app(settings)` builds the app; `service.app.run` serves it (`wavenet serve`).
"""
