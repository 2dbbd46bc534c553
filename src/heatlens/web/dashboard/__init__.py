"""The dashboard (DESIGN §5): server-rendered pages over the engine's rows and the scorecard.

`routes` serves them; `heat`, `delivery` and `records` build the views; `charts` the Vega-Lite
specs; `pages` renders views into pages — or, all together, into the self-contained HTML report.
"""

from heatlens.web.dashboard.routes import PageCache, router

__all__ = ["PageCache", "router"]
