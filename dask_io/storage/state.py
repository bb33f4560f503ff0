"""State that outlives a process: stable job tokens.

Every resume artefact (a pieces folder, a job marker) is named from :func:`stable_token`
of the job's description, never from Python's ``hash()`` (salted per process since
3.3: a re-run in a new process would look in another folder).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(obj: Any) -> str:
    """``obj`` (JSON-able: dicts, lists, tuples, strings, numbers) as canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_token(obj: Any, length: int = 16) -> str:
    """A hex token of ``obj`` that is the same in every process and on every machine.

    >>> stable_token({"b": [1, 2], "a": "x"}) == stable_token({"a": "x", "b": (1, 2)})
    True
    >>> len(stable_token("job"))
    16
    """
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:length]
