"""Renderers of computed reports: the terminal table and the JSON, CSV and Markdown exports.

Everything here is pure: a `Report` (and, optionally, the analysis layer's changes) in, text or a
Rich renderable out. The CLI and the web layer decide where it goes.
"""

from __future__ import annotations

from heatlens.report.formats import FORMATS, render
from heatlens.report.scorecard import render_scorecard
from heatlens.report.terminal import Change, Changes, segment_key, terminal_table

__all__ = [
    "FORMATS",
    "Change",
    "Changes",
    "render",
    "render_scorecard",
    "segment_key",
    "terminal_table",
]
