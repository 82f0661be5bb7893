"""Exploration for the next step of issue 11 (session 10; train part of the labels only, nothing here is used by the
package): a learned "readable choice" gate, a logistic regression on the same gate features (text features, log
reference perplexity, topic similarity), against the fitted threshold gates. Out of fold inside the label train part
(333 rows): best F1 for a readable choice 0.78 (learned) against 0.55 (threshold gates, 5-fold CV); at the empathy
judge's cut-off 1.257 the learned gate (out of fold) makes 5 train calls, 4 right (recall 0.18), the threshold gates
(fitted on all of train) 2, both right (0.09).
A pipeline built on it would need its own fresh batch (batch6 has been read).

Reads the labelled rows dumped from ``validation.compute_rows`` (features, perplexity, topic, empathy per row) as
JSON: ``python staging/labels/explore_learned_gate.py ROWS.json``.
"""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from empathy_core.study import validation, gates
from empathy_core.study.labels import LabelledReply
raw=json.load(open(sys.argv[1]))
rows=[validation.Row(LabelledReply(**r['item']), r['features'], r['perplexity'], r['topic'], r['empathy'], r['empathy_pairs']) for r in raw]
train=[r for r in rows if r.item.split=='train']
lab=np.array([r.item.label for r in train])
good=np.isin(lab, validation.GOOD)
emp=lab=='empathic_choice'
keys=sorted(train[0].features)
X=np.array([[r.features[k] for k in keys]+[np.log(r.perplexity) if np.isfinite(r.perplexity) else 10, r.topic] for r in train])
X=(X-X.mean(0))/(X.std(0)+1e-9)
oof=np.zeros(len(train))
for tr,te in StratifiedKFold(5,shuffle=True,random_state=0).split(X,good):
    oof[te]=LogisticRegression(C=1.0,class_weight='balanced',max_iter=1000).fit(X[tr],good[tr]).decision_function(X[te])
def f1(pred,y):
    tp=(pred&y).sum(); return 2*tp/(pred.sum()+y.sum()) if tp else 0
print('learned gate: best OOF F1 for readable', max(f1(oof>=c,good) for c in np.unique(oof)))
cv=validation.cross_validate_rules(train)
r=cv['joint_f1']['all_gates_pass']; print('threshold gates (CV):', r['precision'], r['recall'], 2*r['precision']*r['recall']/(r['precision']+r['recall']))
s=np.array([r.empathy for r in train])
for c in (0.0,):
    pas=oof>=c
    for cut in (0.5,0.75,1.0,1.257):
        pred=pas&(s>=cut); tp=(pred&emp).sum()
        print(f'learned gate>= {c}, judge>= {cut}: empathic calls {pred.sum()}, correct {tp}, recall {tp/emp.sum():.2f}')
t=validation.fit_thresholds(train,'joint_f1')
v=np.array([g.passes for g in validation.verdicts_of(train,t)])
for cut in (0.5,0.75,1.0,1.257):
    pred=v&(s>=cut); tp=(pred&emp).sum()
    print(f'threshold gates (in-sample), judge>= {cut}: calls {pred.sum()}, correct {tp}, recall {tp/emp.sum():.2f}')
