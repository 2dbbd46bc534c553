"""HTML views: the dashboard's pages and the self-contained HTML report, built from the engine's
rows and the scorecard through one set of templates and chart specs (heatlens.web serves them)."""
