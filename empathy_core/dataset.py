"""``python -m empathy_core.dataset check [SCENARIO] | table | assign-splits``: the data checker's command line.

Kept at this path because ``empathy_core/data/README.md`` documents it. The dataset and its
rules live in ``empathy_core/study/dataset.py``.
"""

import sys

from .study.dataset import main

if __name__ == "__main__":
    sys.exit(main())
