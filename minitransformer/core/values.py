"""What the library's argument checks count as an int, or as a number.

A check that wants a count or a size takes a Python or numpy int, but not a bool
(``True`` is an int to Python, and never the count meant) nor a float such as 2.0.
A number is an int or a float of either kind, again not a bool. Each check then
adds its own range and says what to give.

    >>> is_int(np.int64(3)), is_int(True), is_int(2.0)
    (True, False, False)
    >>> is_number(np.float32(0.5)), is_number("0.5")
    (True, False)
"""

from __future__ import annotations

import numpy as np


def is_int(value) -> bool:
    """A Python or numpy int, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A Python or numpy int or float, not a bool (nor a string)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
