"""A task's (or template's) DAG in the terminal: steps by level, each with its state.

[1] [x] diamond_start          complete
[2] [x] diamond_branch_b       complete   <- diamond_start
    [>] diamond_branch_c       in_progress <- diamond_start
[3] [ ] diamond_end            pending    <- diamond_branch_b, diamond_branch_c
"""

from __future__ import annotations

from collections.abc import Sequence

MARKS = {
    "complete": "[x]",
    "resolved_manually": "[=]",
    "error": "[!]",
    "cancelled": "[-]",
    "waiting_for_retry": "[~]",
    "pending": "[ ]",
}
RUNNING = "[>]"


def levels(steps: Sequence[tuple[str, Sequence[str]]]) -> dict[str, int]:
    """Each step's level: 1 for roots, else one more than its deepest parent."""
    parents = {name: list(deps) for name, deps in steps}
    level: dict[str, int] = {}

    def of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in level:
            known = [p for p in parents.get(name, []) if p in parents and p not in seen]
            level[name] = 1 + max((of(p, seen | {name}) for p in known), default=0)
        return level[name]

    for name, _ in steps:
        of(name)
    return level


def draw(steps: Sequence[tuple[str, Sequence[str], str | None]]) -> str:
    """Lines of the DAG; `state` None (a template) shows no marks."""
    level = levels([(name, deps) for name, deps, _ in steps])
    width = max((len(name) for name, _, _ in steps), default=4)
    lines, shown = [], 0
    for name, deps, state in sorted(steps, key=lambda s: level[s[0]]):
        prefix = f"[{level[name]}]" if level[name] != shown else ""
        shown = level[name]
        mark = "" if state is None else MARKS.get(state, RUNNING) + " "
        after = f"  <- {', '.join(deps)}" if deps else ""
        state_text = f" {state:<20}" if state is not None else ""
        lines.append(f"{prefix:>5} {mark}{name:<{width}}{state_text}{after}".rstrip())
    return "\n".join(lines)
