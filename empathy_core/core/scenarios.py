"""The five EIA scenarios, read from ``empathy_core/data/scenarios.json``.

Scenarios are data the whole stack shares (prompts, generation, the app), so they live in
this small module, which core may import. The datasets and the rules they
obey belong to the study (``empathy_core/study/dataset.py``).

    >>> from empathy_core.core.scenarios import get_scenario
    >>> get_scenario("maze").title  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SCENARIO_IDS: tuple[str, ...] = ("food_delivery", "listener", "maze", "protector", "duel")


@dataclass(frozen=True)
class Scenario:
    """One EIA game, written as data (see ``data/scenarios.json``)."""

    id: str
    title: str
    setting: str
    objective: str
    pressure: str
    task_choice: str
    empathic_choice: str
    in_game_messages: tuple[dict, ...]
    rubric: dict[str, str]

    def describe(self) -> str:
        """Setting, objective and pressure as one paragraph (used in prompts and the UI)."""
        return f"{self.setting} Your objective: {self.objective} {self.pressure}"


@lru_cache(maxsize=1)
def scenarios() -> dict[str, Scenario]:
    """Every scenario by id, in file order."""
    raw = json.loads((DATA_DIR / "scenarios.json").read_text())
    out = {}
    for s in raw["scenarios"]:
        s = dict(s)
        s["in_game_messages"] = tuple(s["in_game_messages"])
        out[s["id"]] = Scenario(**s)
    return out


def get_scenario(scenario_id: str) -> Scenario:
    """The scenario with this id; ``ValueError`` naming the choices otherwise."""
    table = scenarios()
    if scenario_id not in table:
        raise ValueError(f"Unknown scenario {scenario_id!r}. Choose one of: {', '.join(table)}.")
    return table[scenario_id]
