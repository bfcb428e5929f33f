"""Count the words of one shard; print them as JSON (runs on the machine, stdlib only)."""

import json
import re
import sys
from collections import Counter

with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    words = Counter(w.lower() for w in re.findall(r"[A-Za-z']+", f.read()))
print(json.dumps(dict(words)))
