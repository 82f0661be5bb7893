"""Run the project's existing data rules plus the new tone rules on one staged scenario.
Usage: .venv/bin/python staging/data-v2/check_part.py SCENARIO
"""
import json, sys
from dataclasses import fields
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import empathy_core.study.dataset as d

STAGE = Path(str(Path(__file__).resolve().parent))
sid = sys.argv[1]


def rows(kind):
    f = STAGE / kind / f"{sid}.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.exists() else []


def make(cls, r):
    names = {f.name for f in fields(cls)}
    return cls(scenario=sid, **{k: v for k, v in r.items() if k in names and k != "scenario"})


pairs = [make(d.Pair, r) for r in rows("pairs")]
longs = [make(d.Pair, r) for r in rows("longform")]
graded = [make(d.Graded, r) for r in rows("graded")]
probs = [x for x in d.check_pairs(pairs) if not x.startswith(("only", "fewer", "voice")) and ": only" not in x]
probs += [f"longform {x}" for x in d.check_pairs(longs) if not x.startswith(("only", "fewer", "voice")) and ": only" not in x]
probs += [x for x in d.check_graded(graded) if "only" not in x and not x.startswith(tuple(f"{o}:" for o in d.SCENARIO_IDS if o != sid))]
n = len(pairs)
lex = sum(d.is_lexically_controlled(p) for p in pairs)
print(f"{sid}: {n} short pairs ({sum(p.minimal for p in pairs)} minimal, {lex} lexically controlled, "
      f"splits {[sum(p.split == s for p in pairs) for s in ('train', 'dev', 'test')]}), {len(longs)} long-form, {len(graded)} graded")
if n and lex < 0.5 * n:
    probs.append(f"{lex} lexically controlled pairs, keep >= 50%")
if n and sum(p.minimal for p in pairs) < 0.25 * n:
    probs.append("fewer than 25% minimal pairs")
print(f"existing rules: {len(probs)} problems")
for p in probs:
    print("  -", p)
sys.argv = ["tone.py", str(STAGE), sid]
exec(open(str(Path(__file__).resolve().parent / "tone.py")).read())
