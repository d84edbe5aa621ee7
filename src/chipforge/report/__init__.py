"""Rendering results for people (rich tables, HTML pages, PNG charts) and programs (JSON)."""

from chipforge.report.jsonout import to_json

__all__ = ["render_report", "to_json", "write_report"]


def __getattr__(name: str):
    # HTML needs plotly (the report extra): imported on first use, not with the package
    if name in ("render_report", "write_report"):
        from chipforge.report import html

        return getattr(html, name)
    raise AttributeError(name)
