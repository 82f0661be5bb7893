"""Tone-balance and format checks for the staged data (issue 10). Run: python3 staging/data-v2/tone.py [DATA_DIR [SCENARIO]]

Rules checked:
  * per marker category (apology, politeness, hedging, warmth), total counts on the empathic vs task
    side of all pairs (short + long-form) are within +-10% of each other (max/min <= 1.10; both 0 is fine;
    if the larger count is < 10 an absolute gap <= 1 is allowed)
  * no single marker word's presence predicts the label with AUROC outside [0.4, 0.6]
  * graded set: |Spearman rho(length in chars, label)| <= 0.15 overall and (reported) per scenario
  * long-form pairs: each side 80-250 words
  * every pair side carries a rubric level: empathic_level == 2, task_level == 0
"""
import json, re, sys
from pathlib import Path

MARKERS = {
    "apology": ["sorry", "apologize", "apologise", "apologies", "apology", "my bad", "forgive me", "regret",
                "unfortunately", "excuse me", "pardon"],
    "politeness": ["please", "thank you", "thanks", "thank", "kindly", "appreciate", "if you don't mind",
                   "would you mind", "with respect", "respectfully", "you're welcome", "cheers"],
    "hedging": ["maybe", "perhaps", "might", "i think", "i guess", "probably", "sort of", "kind of", "possibly",
                "i suppose", "a bit", "a little", "somewhat", "i believe", "it seems"],
    "warmth": ["hope", "glad", "happy", "dear", "friend", "love", "gentle", "gently", "warm", "wish", "take care",
               "hug", "good luck", "sweet", "be kind", "smile", "okay?", "you matter", "proud"],
}


def word_re(w):
    return re.compile(r"(?<![\w'])" + re.escape(w) + r"(?![\w'])", re.I)


RES = {c: [(w, word_re(w)) for w in ws] for c, ws in MARKERS.items()}


def count(text, cat):
    return sum(len(r.findall(text)) for _, r in RES[cat])


def read(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def spearman(x, y):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    n = len(x); mx = sum(rx) / n; my = sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** .5; vy = sum((b - my) ** 2 for b in ry) ** .5
    return cov / (vx * vy) if vx and vy else 0.0


def main(data=Path(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent)),
         only=sys.argv[2] if len(sys.argv) > 2 else None):
    problems = []
    pairs = []
    for kind in ("pairs", "longform"):
        for f in sorted((data / kind).glob("*.jsonl")) if (data / kind).exists() else []:
            if only and f.stem != only:
                continue
            for p in read(f):
                p["_kind"] = kind
                pairs.append(p)
    E = [p["empathic"] for p in pairs]; T = [p["task"] for p in pairs]
    print(f"{len(pairs)} pairs ({sum(p['_kind']=='pairs' for p in pairs)} short, {sum(p['_kind']=='longform' for p in pairs)} long-form)")
    for cat in MARKERS:
        ce, ct = sum(count(t, cat) for t in E), sum(count(t, cat) for t in T)
        hi, lo = max(ce, ct), min(ce, ct)
        ok = (hi == 0) or (hi <= 1.10 * lo) or (hi < 10 and hi - lo <= 1)
        print(f"  {cat:10s} empathic {ce:4d}  task {ct:4d}  {'ok' if ok else 'UNBALANCED'}")
        if not ok:
            problems.append(f"{cat}: empathic {ce} vs task {ct} (must be within 10%)")
    n = len(pairs)
    for cat, ws in RES.items():
        for w, r in ws:
            ke = sum(bool(r.search(t)) for t in E); kt = sum(bool(r.search(t)) for t in T)
            auc = 0.5 + (ke - kt) / (2 * n) if n else 0.5
            if auc > 0.6 or auc < 0.4:
                problems.append(f"marker '{w}' alone predicts the label: AUROC {auc:.3f} (empathic {ke}, task {kt} texts)")
    for p in pairs:
        if p.get("empathic_level") != 2 or p.get("task_level") != 0:
            problems.append(f"{p['id']}: needs empathic_level 2 and task_level 0 (got {p.get('empathic_level')}, {p.get('task_level')})")
        if p["_kind"] == "longform":
            for side in ("empathic", "task"):
                nw = len(p[side].split())
                if not 80 <= nw <= 250:
                    problems.append(f"{p['id']}.{side}: {nw} words (long-form needs 80-250)")
    g = []
    for f in sorted((data / "graded").glob("*.jsonl")):
        if only and f.stem != only:
            continue
        rows = read(f)
        g += rows
        rho = spearman([len(r["text"]) for r in rows], [r["label"] for r in rows])
        print(f"  graded {f.stem:14s} n={len(rows):3d} rho(length, level) = {rho:+.3f}")
    if g:
        rho = spearman([len(r["text"]) for r in g], [r["label"] for r in g])
        print(f"  graded overall n={len(g)} rho(length, level) = {rho:+.3f}")
        if abs(rho) > 0.15:
            problems.append(f"graded set: |rho(length, level)| = {abs(rho):.3f} > 0.15")
    print(f"{len(problems)} problems")
    for p in problems[:80]:
        print("  -", p)
    return problems


if __name__ == "__main__":
    main()
