"""What a visitor may ask for: limits, choices, defaults and the checks that name what to fix.

No model and no UI here: the service calls these before any work, and the UI builds its
controls from the same constants and choices.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..core.models import BUNDLED, REGISTRY, hub_reachable
from ..core.prompts import base_prefix, chat_messages
from ..core.scenarios import SCENARIO_IDS, get_scenario, scenarios
from ..core.steering import POSITIONS, Positions
from ..errors import UserError
from ..study import dataset

MAX_TEXT_CHARS = 20_000  # rejected before tokenizing
MAX_TEXT_TOKENS = 512
MAX_PROMPT_TOKENS = 1024
ALPHA_LIMIT = 1.0  # relative units: alpha * (mean residual norm of the layer)
DOSE_POINTS = 7
MAX_SEED = 2**31 - 1
CUSTOM = "custom"  # scenario choice meaning "my own prompt, no game context"
# Content care (issue 14): two scenarios quote self-harm and bullying; a classroom starts on the gentler ones.
SENSITIVE_SCENARIOS = ("listener", "protector")
GENTLE_SCENARIOS = ("food_delivery", "maze")
HELPLINE = "If any of this affects you, talk to someone you trust or a local helpline."
CONTENT_NOTE = ("**Content note.** *The Listener* and *The Protector* deal with self-harm and bullying: they test whether "
                "a model notices a person in distress while it pursues a game goal, and small models can answer them "
                "clumsily or hurtfully. " + HELPLINE)
SCENARIO_NOTE = "**Content note:** this scenario deals with {theme}. " + HELPLINE
SCENARIO_THEMES = {"listener": "self-harm (a player who feels everyone would be better off without them)",
                   "protector": "bullying of a 12-year-old who is told to hurt themselves"}
POSITION_CHOICES = [("every position (the study's choice)", "all"), ("the prompt only", "prompt"),
                    ("generated tokens only", "generated")]


def hub_cached(hub_id: str) -> bool:
    """Whether a hub model's config is in the local Hugging Face cache (no network used)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except (OSError, ValueError):  # an unusual cache layout or id: treat as absent
        return False


def model_choices(check_hub: bool = True) -> list[tuple[str, str]]:
    """(label, key) for the selector: bundled models first, then the study's models by hub id,
    each labelled with whether it can load here (local cache, hub reachable, or neither)."""
    online = check_hub and os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable(timeout=2.0)
    out = []
    for key, spec in REGISTRY.items():
        if key in BUNDLED:
            where = "bundled, offline"
        elif hub_cached(spec.hub_id):
            where = f"study model {spec.hub_id}, in the local cache"
        elif online:
            where = f"study model {spec.hub_id}, downloads on first use"
        else:
            where = f"study model {spec.hub_id}, not available offline"
        out.append((f"{key} ({where})", key))
    return out


def classroom_mode(flag: bool = False) -> bool:
    """Whether the app runs in classroom mode: the ``--classroom`` flag or ``EMPATHY_CLASSROOM=1``."""
    return flag or os.environ.get("EMPATHY_CLASSROOM", "").strip().lower() in ("1", "true", "yes", "on")


def scenario_choices(classroom: bool = False) -> list[tuple[str, str]]:
    """(title, id) of every scenario, then the custom-prompt choice.

    In classroom mode the gentler scenarios come first and the two sensitive ones are labelled
    as having a content note."""
    all_s = list(scenarios().values())
    if classroom:
        all_s.sort(key=lambda s: (s.id in SENSITIVE_SCENARIOS, s.id not in GENTLE_SCENARIOS))
    return ([(s.title + (" (content note)" if classroom and s.id in SENSITIVE_SCENARIOS else ""), s.id) for s in all_s]
            + [("Your own prompt (no game)", CUSTOM)])


def first_scenario(classroom: bool = False) -> str:
    """The scenario the Steer tab opens on: a gentle one in classroom mode."""
    return GENTLE_SCENARIOS[0] if classroom else "listener"


def examples(per_scenario: int = 1) -> list[tuple[str, str, str]]:
    """(scenario title, label, text) from the test split: an empathic and a task reply per scenario."""
    out = []
    titles = {s.id: s.title for s in scenarios().values()}
    for sid in SCENARIO_IDS:
        pairs = [p for p in dataset.load_pairs() if p.scenario == sid and p.split == "test"][:per_scenario]
        for p in pairs:
            out += [(titles[sid], "empathic", p.empathic), (titles[sid], "task-focused", p.task)]
    return out


def default_prompt(handle_is_chat: bool, scenario: str) -> str:
    """The editable part of a scenario's prompt: the in-game user turn (chat models) or the story prefix (base models)."""
    if scenario == CUSTOM:
        return "My friend just told me she failed her driving test again. What should I say to her?"
    if handle_is_chat:
        return chat_messages(scenario)[1]["content"]
    return base_prefix(scenario)  # exactly the sweep's prompt (see prompts.render_prompt)


def describe_scenario(scenario: str) -> str:
    """A short Markdown description of the scenario (or of the custom-prompt choice)."""
    if scenario == CUSTOM:
        return "Your own prompt, sent as a plain user message with no game context."
    s = get_scenario(scenario)
    return (f"**{s.title}.** {s.setting} *Objective:* {s.objective} *Pressure:* {s.pressure}  \n"
            f"Task-focused choice: {s.task_choice} Empathic choice: {s.empathic_choice}")


def scenario_note(scenario: str) -> str:
    """The content note of a sensitive scenario (Markdown), or "" for the others."""
    return SCENARIO_NOTE.format(theme=SCENARIO_THEMES[scenario]) if scenario in SCENARIO_THEMES else ""


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as a whole number from ``lo`` to ``hi``; ``UserError`` naming the control otherwise."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}.") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise UserError(f"{name} must be a whole number from {lo} to {hi} (got {value!r}).")
    return int(f)


def check_alpha(alpha: Any, limit: float = ALPHA_LIMIT) -> float:
    """A finite relative α within ±``limit``."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise UserError(f"α must be a number, not {alpha!r}.") from None
    if not math.isfinite(a):
        raise UserError("α must be a finite number (got NaN or infinity).")
    if abs(a) > limit:
        raise UserError(f"α = {a:g} is out of range: use a value from {-limit:g} to {limit:g} (relative units).")
    return a


def check_scenario(scenario: Any) -> str:
    if scenario not in (*SCENARIO_IDS, CUSTOM):
        raise UserError(f"Unknown scenario {scenario!r}. Choose one of: {', '.join((*SCENARIO_IDS, CUSTOM))}.")
    return scenario


def check_positions(positions: Any) -> Positions:
    if positions not in POSITIONS:
        raise UserError(f"Unknown positions {positions!r}; choose one of: {', '.join(POSITIONS)}.")
    return positions


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("The prompt is empty: pick a scenario or write a prompt.")
    if len(prompt) > MAX_TEXT_CHARS:
        raise UserError(f"The prompt is {len(prompt):,} characters; keep it under {MAX_PROMPT_TOKENS} tokens.")
    return prompt
