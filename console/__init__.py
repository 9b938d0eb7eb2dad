"""The operator console: server-rendered pages over the job store, with actions through the
control API. `console.app.create_app` builds the ASGI app; `jobctl console` serves it."""
