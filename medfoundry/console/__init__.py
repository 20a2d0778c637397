"""`medfoundry console`: the web console (FastAPI + Jinja2 + htmx) over the shared service layer
(`medfoundry.services`). Front-end files are vendored in `static/` with their licences; nothing loads from a CDN."""
