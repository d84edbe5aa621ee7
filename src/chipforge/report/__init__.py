"""Rendering results for people (rich tables) and programs (deterministic JSON)."""

from chipforge.report.jsonout import to_json

__all__ = ["to_json"]
