"""The user's private folder for work nnc keeps between runs: the analysed grammar and the
compiled module template, together about a third of a whole `nnc compile` process.

Both files are loaded with pickle or marshal, so the folder is the user's own (mode 0700 in
XDG_CACHE_HOME or ~/.cache), never a shared temporary one, the same trust as Python's own
__pycache__. Each file records what it was built from and is rebuilt when that changes;
a damaged one changes nothing but speed.
"""

from __future__ import annotations

import os


def cache_folder() -> str | None:
    """`$XDG_CACHE_HOME/nnc` or `~/.cache/nnc`, created private; None where neither can be used."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home != "~" else "")
    if not os.path.isabs(base):
        return None
    folder = os.path.join(base, "nnc")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return folder
