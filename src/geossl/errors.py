"""User-facing errors.

Every error a user can act on (bad path, empty folder, corrupt image, unknown name, NaN loss...) is a
:class:`GeosslError`: its message is one line that says what is wrong and how to fix it. The CLI prints
that line and exits with code 2; Python callers can catch it (it is also a ``ValueError``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GeosslError(ValueError):
    """An error caused by the user's input, with a one-line message saying how to fix it."""


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> GeosslError:
    """Build the error for an unknown registry name, listing the known ones and the closest match.

    Args:
        kind: what was looked up, e.g. ``"method"`` or ``"backbone"``.
        name: the name the user gave.
        known: the valid names.
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return GeosslError(f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(known)}.")
