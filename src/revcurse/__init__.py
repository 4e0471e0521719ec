"""revcurse: reproduce, explain and fix the LLM reversal curse on your own machine.

import revcurse
revcurse.compare("baseline,in_context")   # revcurse.api: the commands as functions
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`revcurse.compare` and `revcurse.teach` (revcurse.api), imported when first used: the
    command line does not pay for them."""
    if name in ("compare", "teach"):
        from revcurse import api

        return getattr(api, name)
    raise AttributeError(f"module 'revcurse' has no attribute {name!r}")
