"""Anonymity across queries (DESIGN §4 Happiness, v2; docs/anonymity.md): which happiness cells
are hidden, decided once per wave on its atomic cells and applied identically in every query.

A wave's answers fall into atomic cells (leaf team × question × capability). Every happiness
output of that wave reads the union of the atomic cells under one node of the team axis (the
organisation, a top-level group, a team) and one node of the question axis (every question, a
capability, a question, a question of one capability): a *lattice cell*. Two nodes covering the
same atomic cells are the same lattice cell — a group whose only answering team is `a` is the
same cell as team `a` — so they share one fate.

`decide` hides every cell with fewer than k distinct respondents, then enforces along both axes,
until nothing changes, for every split of every cell (by group, team, capability or question)
whether its parent is visible or hidden: the hidden children are none, or at least two that
together have at least k distinct respondents (one person in two hidden children counts once) —
else the visible child with the fewest respondents among all such splits (ties: its atomic
cells in order) is hidden too, one at a time, so the result depends on no processing order. A
hidden parent must have hidden children in each of its splits, or it would be the sum of
visible ones. Pure Python: no Ibis, no store; the engine gives it the answers and asks `hidden`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

Atom = tuple[Any, Any, Any]  # (team, question, capability)
TeamNode = tuple[Any, ...]  # ("org",) | ("group", g) | ("team", t)
QuestionNode = tuple[Any, ...]  # ("all",) | ("capability", c) | ("question", q) | ("pair", q, c)
Content = frozenset[int]  # indices of atomic cells

ORG: TeamNode = ("org",)
ALL: QuestionNode = ("all",)


def team_node(segment: dict[str, Any]) -> TeamNode:
    """The team-axis node an output segment reads (team wins over group: it determines it)."""
    if "team" in segment:
        return ("team", segment["team"])
    if "group" in segment:
        return ("group", segment["group"])
    return ORG


def question_node(segment: dict[str, Any]) -> QuestionNode:
    """The question-axis node an output segment reads."""
    if "question" in segment and "capability" in segment:
        return ("pair", segment["question"], segment["capability"])
    if "question" in segment:
        return ("question", segment["question"])
    if "capability" in segment:
        return ("capability", segment["capability"])
    return ALL


def _order(node: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is not None, "" if v is None else str(v)) for v in node)


@dataclass
class Lattice:
    """One wave's decided cells: `hidden(team node, question node)` for any output cell."""

    k: int
    cells: dict[tuple[TeamNode, QuestionNode], Content] = field(default_factory=dict)
    respondents: dict[Content, int] = field(default_factory=dict)
    hidden_cells: set[Content] = field(default_factory=set)

    def hidden(self, tn: TeamNode, qn: QuestionNode) -> bool:
        """Whether the output cell (tn, qn) of this wave is hidden; an empty cell never is."""
        content = self.cells.get((tn, qn))
        return content is not None and content in self.hidden_cells

    def count(self, tn: TeamNode, qn: QuestionNode) -> int:
        """Distinct respondents of the cell (0 when empty)."""
        content = self.cells.get((tn, qn))
        return 0 if content is None else self.respondents[content]


def decide(answers: dict[Atom, set[Hashable]], k: int, group_of: Callable[[Any], Any]) -> Lattice:
    """The lattice of one wave (of one answer family) from each atomic cell's respondents."""
    atoms = sorted(answers, key=_order)
    index = {a: i for i, a in enumerate(atoms)}
    teams = sorted({a[0] for a in atoms}, key=lambda v: _order((v,)))
    pairs = sorted({(a[1], a[2]) for a in atoms}, key=_order)

    team_nodes: dict[TeamNode, list[Any]] = {ORG: teams}
    for t in teams:
        team_nodes.setdefault(("group", group_of(t)), []).append(t)
        team_nodes[("team", t)] = [t]
    question_nodes: dict[QuestionNode, list[tuple[Any, Any]]] = {ALL: pairs}
    for q, c in pairs:
        question_nodes.setdefault(("capability", c), []).append((q, c))
        question_nodes.setdefault(("question", q), []).append((q, c))
        question_nodes[("pair", q, c)] = [(q, c)]

    def team_splits(tn: TeamNode) -> list[list[TeamNode]]:
        if tn == ORG:
            groups = [n for n in team_nodes if n[0] == "group"]
            return [groups, [("team", t) for t in teams]]
        if tn[0] == "group":
            return [[("team", t) for t in team_nodes[tn]]]
        return []

    def question_splits(qn: QuestionNode) -> list[list[QuestionNode]]:
        if qn == ALL:
            return [
                [n for n in question_nodes if n[0] == "capability"],
                [n for n in question_nodes if n[0] == "question"],
                [("pair", q, c) for q, c in pairs],
            ]
        if qn[0] in ("capability", "question"):
            return [[("pair", q, c) for q, c in question_nodes[qn]]]
        return []

    lattice = Lattice(k)
    who: dict[Content, frozenset[Hashable]] = {}
    for tn, members in team_nodes.items():
        for qn, qpairs in question_nodes.items():
            content = frozenset(
                i for t in members for q, c in qpairs if (i := index.get((t, q, c))) is not None
            )
            if not content:
                continue
            lattice.cells[(tn, qn)] = content
            if content not in who:
                who[content] = frozenset().union(*(answers[atoms[i]] for i in content))
    lattice.respondents = {c: len(w) for c, w in who.items()}

    # every split of every cell, children by content (empty children dropped, duplicates merged)
    splits: set[tuple[Content, frozenset[Content]]] = set()
    for (tn, qn), content in lattice.cells.items():
        options = [[(t, qn) for t in s] for s in team_splits(tn)]
        options += [[(tn, q) for q in s] for s in question_splits(qn)]
        for option in options:
            children = frozenset(lattice.cells[n] for n in option if n in lattice.cells)
            if len(children) > 1:
                splits.add((content, children))

    # Hide the smallest visible child of any split that breaks the rule, one at a time, until
    # none does: the result depends on no processing order (ties: the lowest atomic cells).
    ranks: dict[Content, tuple[int, list[Any]]] = {}

    def rank(c: Content) -> tuple[int, list[Any]]:
        if c not in ranks:
            ranks[c] = (lattice.respondents[c], sorted(_order(atoms[i]) for i in c))
        return ranks[c]

    hidden = {c for c, n in lattice.respondents.items() if n < k}
    ordered = list(splits)
    touching: dict[Content, list[int]] = defaultdict(list)  # cell → splits it is part of
    for i, (parent, children) in enumerate(ordered):
        for c in (parent, *children):
            touching[c].append(i)

    def breaks(i: int) -> bool:
        parent, children = ordered[i]
        shut = [c for c in children if c in hidden]
        return len(shut) < len(children) and _needs_more(parent in hidden, shut, who, k)

    broken = {i for i in range(len(ordered)) if breaks(i)}
    while broken:
        candidates = {c for i in broken for c in ordered[i][1] if c not in hidden}
        chosen = min(candidates, key=rank)
        hidden.add(chosen)
        for i in touching[chosen]:
            if breaks(i):
                broken.add(i)
            else:
                broken.discard(i)
    lattice.hidden_cells = hidden
    return lattice


def _needs_more(
    parent_hidden: bool, shut: list[Content], who: dict[Content, frozenset[Hashable]], k: int
) -> bool:
    """Whether a split's hidden children leave something under k recoverable: one hidden child
    is its parent minus the visible ones; several under k together are a small group; a hidden
    parent with no hidden child is the sum of its visible children."""
    if not shut:
        return parent_hidden
    if len(shut) == 1:
        return True
    return len(frozenset().union(*(who[c] for c in shut))) < k


def group_answers(
    rows: Iterable[tuple[Any, Atom, Hashable]],
) -> dict[Any, dict[Atom, set[Hashable]]]:
    """(wave, atom, respondent) rows → wave → atom → respondents."""
    out: dict[Any, dict[Atom, set[Hashable]]] = defaultdict(lambda: defaultdict(set))
    for wave, atom, respondent in rows:
        out[wave][atom].add(respondent)
    return out
