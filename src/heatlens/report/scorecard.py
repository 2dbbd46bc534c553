"""The per-capability scorecard (heatlens.analysis.scorecard) rendered for a terminal."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from heatlens.analysis.scorecard import HEAT, Cell, Scorecard
from heatlens.analysis.waves import wave_label
from heatlens.metrics.catalog import CATALOG, DIMENSION_TITLES
from heatlens.report.terminal import TIER_STYLES
from heatlens.report.units import format_delta, format_value


def render_scorecard(card: Scorecard) -> Group:
    """The scorecard for a terminal: one row per capability, the four HEAT dimensions as columns
    (value, change arrow, `*` when significant), org-wide DORA on a line below."""
    head = Text(f"heatlens scorecard · grain {card.grain} · ", "bold")
    head.append(f"{card.period.isoformat()} against {card.previous.isoformat()}")
    # light borders and unwrapped cells keep a row on one line of an 80-column terminal
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    table.add_column("capability", no_wrap=True)
    for metric in HEAT:
        table.add_column(DIMENSION_TITLES[CATALOG[metric].dimension], justify="right", no_wrap=True)
    for score in card.capabilities:
        table.add_row(Text(score.capability), *(_cell_text(c) for c in score.cells))
    parts: list[Table | Text] = [head]
    if card.capabilities:
        parts.append(table)
    else:
        parts.append(
            # the store holds records (an empty one never gets here): `demo` is no answer
            Text(
                "no capability has usage in these periods: `heatlens report --grain all` shows "
                "where the records are",
                "yellow",
            )
        )
    parts.append(_dora_text(card))
    notes = [
        "adoption: share of eligible teams · task success: share of successful attempts · "
        "efficiency: median task duration · happiness: CSAT (top-2-box)"
    ]
    waves = sorted({wave_label(s.happiness.wave) for s in card.capabilities if s.happiness.wave})
    if waves:
        notes.append(
            "happiness is the latest survey wave closed by the period's end: " + ", ".join(waves)
        )
    if any(c.change and c.change.significant for s in card.capabilities for c in s.cells):
        notes.append(
            "* significant: the 95 % bootstrap interval of the change, resampling teams, "
            "excludes 0 (for happiness, over the teams not suppressed)."
        )
    parts.append(Text("\n".join(notes), "dim"))
    return Group(*parts)


def _cell_text(cell: Cell) -> Text:
    if cell.suppressed:
        return Text("suppressed", "dim italic")
    unit = CATALOG[cell.metric].unit
    text = Text(format_value(cell.value, unit), "bold" if cell.value is not None else "dim")
    change = cell.change
    if change is None:
        return text
    if change.delta == 0:  # judged, and the same: said, not drawn as an arrow to zero
        text.append(" no change", "dim")
        return text
    good = (change.delta > 0) == (CATALOG[cell.metric].direction == "up")
    arrow = "↑" if change.delta > 0 else "↓"
    mark = "*" if change.significant else " "
    # percentage points without a space: a cell must fit its column, or the `*` is cut off
    size = (
        f"{abs(change.delta) * 100:.1f}pp" if unit == "ratio" else format_delta(change.delta, unit)
    )
    if size == "0.0pp":  # a change too small to print is still a change
        size = "<0.1pp"
    text.append(f" {arrow}{size}{mark}", "green" if good else "red")
    return text


def _dora_text(card: Scorecard) -> Text:
    text = Text(f"DORA · org-wide · {card.period.isoformat()}: ", "bold")
    if not card.dora:
        text.append("no deployments or incidents in this period", "dim")
        return text
    for i, row in enumerate(card.dora):
        if i:
            text.append(" · ")
        name = row.metric.removeprefix("dora.").replace("_", " ")
        unit = CATALOG[row.metric].unit if row.metric in CATALOG else ""
        text.append(f"{name} ")
        text.append(format_value(None if row.value is None else float(row.value), unit), "bold")
        if row.tier:
            text.append(" ")
            text.append(f" {row.tier} ", TIER_STYLES.get(row.tier, ""))
    return text
