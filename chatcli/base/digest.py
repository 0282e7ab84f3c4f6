"""The sha256 of JSON data, its keys sorted: one name for a request however it was built.

The response cache keys a reply by it (core/cache.py), and a batch its rows and its job
(batch/requests.py), so the same request hashes the same wherever it is asked about.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
