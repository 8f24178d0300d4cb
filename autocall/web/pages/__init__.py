"""The console: server-rendered pages (Jinja2 + vendored htmx), no inline scripts."""

from autocall.web.pages.routes import install

__all__ = ["install"]
