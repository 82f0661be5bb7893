"""Checker for round-4 pairs of ONE scenario: python check_r4.py SCENARIO  (run with /work/main/.venv/bin/python)."""
import json, re, sys
sys.path.insert(0, "/work/main")
from empathy_core.study import dataset, data_rules
from empathy_core.study.dataset import Pair

PREFIX = {"food_delivery": "fd", "listener": "li", "maze": "mz", "protector": "pr", "duel": "du"}
# words that name or mock the other person's distress: must appear on BOTH sides about equally
DISTRESS = ["whine", "whining", "cry", "crying", "cries", "tears", "scared", "afraid", "upset", "sad", "begging",
            "beg", "drama", "loser", "pathetic", "worthless", "newbie", "noob", "baby", "panic", "panicking",
            "shut up", "go away", "stop messaging", "quit", "your problem", "my problem", "deal with it", "nobody"]
DRE = [(w, re.compile(r"(?<![\w'])" + re.escape(w) + r"(?![\w'])", re.I)) for w in DISTRESS]

def main(s):
    path = f"/work/round4/pairs/{s}.jsonl"
    rows = [json.loads(l) for l in open(path) if l.strip()]
    probs = []
    pairs = []
    for i, r in enumerate(rows):
        want = {"id", "moment", "voice", "minimal", "empathic", "task", "empathic_level", "task_level", "batch"}
        if set(r) != want:
            probs.append(f"line {i+1}: fields {sorted(r)} should be exactly {sorted(want)}")
            continue
        if not re.fullmatch(PREFIX[s] + r"-p1\d\d", r["id"]):
            probs.append(f"line {i+1}: id {r['id']} should be {PREFIX[s]}-p101 .. {PREFIX[s]}-p120")
        if r["batch"] != "r4":
            probs.append(f"{r['id']}: batch must be 'r4'")
        p = Pair(scenario=s, **r)
        pairs.append(p)
        probs += dataset._pair_problems(p, require_split=False)
        for side in ("empathic", "task"):
            n = len(r[side])
            if not 25 <= n <= 160:
                probs.append(f"{r['id']}.{side}: {n} characters, keep 25-160")
    existing = {t for q in [*dataset.load_pairs(), *dataset.load_longform()] for t in (q.empathic, q.task)}
    existing |= {g.text for g in dataset.load_graded()} | {x for c in dataset.load_confounds() for x in (c.high, c.low)}
    probs += [f"{p.id}: a text already in the dataset" for p in pairs for t in (p.empathic, p.task) if t in existing]
    ids = [p.id for p in pairs]
    if len(ids) != len(set(ids)):
        probs.append("duplicate ids")
    n = len(pairs)
    if n != 20:
        probs.append(f"{n} pairs, need exactly 20")
    if sum(p.minimal for p in pairs) < 8:
        probs.append(f"{sum(p.minimal for p in pairs)} minimal pairs, need >= 8")
    lex = sum(dataset.is_lexically_controlled(p) for p in pairs)
    if lex < 12:
        probs.append(f"{lex} lexically controlled pairs (no cue words on either side), need >= 12")
    for v in dataset.VOICES:
        k = sum(p.voice == v for p in pairs)
        if k < 4:
            probs.append(f"voice {v}: {k} pairs, need >= 4")
    short = sum(max(len(p.empathic), len(p.task)) <= 80 for p in pairs)
    if short < 8:
        probs.append(f"{short} pairs with both sides <= 80 characters, need >= 8")
    E, T = [p.empathic for p in pairs], [p.task for p in pairs]
    for cat in data_rules.MARKERS:
        ce, ct = sum(data_rules.marker_count(t, cat) for t in E), sum(data_rules.marker_count(t, cat) for t in T)
        if abs(ce - ct) > 1:
            probs.append(f"tone {cat}: {ce} markers on the empathic side vs {ct} on the task side (differ by at most 1)")
    for w, r in DRE:
        ke, kt = sum(bool(r.search(t)) for t in E), sum(bool(r.search(t)) for t in T)
        if abs(ke - kt) > 2:
            probs.append(f"distress word {w!r}: in {ke} empathic vs {kt} task texts (differ by at most 2)")
    named = sum(any(r.search(p.empathic) for _, r in DRE) and any(r.search(p.task) for _, r in DRE) for p in pairs)
    print(f"{n} pairs; minimal {sum(p.minimal for p in pairs)}; lexically controlled {lex}; short {short}; "
          f"both sides use a distress word: {named}")
    print(f"{len(probs)} problems")
    for x in probs:
        print(" -", x)

main(sys.argv[1])
