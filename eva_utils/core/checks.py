"""Checks of argument values, one home for each rule: "a positive whole number" is written once, here.

    batch_size = positive_int(batch_size, "batch_size")   # 0, -4, 2.5, True or "8" -> UserError(param="batch_size")
"""

from __future__ import annotations

import operator

from eva_utils.core.errors import UserError

__all__ = ["non_negative_int", "positive_int"]


def _whole(value: object, name: str, minimum: int, rule: str) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (an int or a numpy integer, not a bool)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise UserError(f"{name} must be {rule}, got {value!r}", param=name)
    return number


def positive_int(value: object, name: str) -> int:
    """``value`` as an int, checked to be a whole number >= 1.

    Args:
        value: an int or a numpy integer (a bool, a float or a string is refused).
        name: the parameter's name, for the message and ``UserError.param``.

    Returns:
        ``int(value)``.
    """
    return _whole(value, name, 1, "a positive integer")


def non_negative_int(value: object, name: str) -> int:
    """``value`` as an int, checked to be a whole number >= 0 (a count where 0 means none or off)."""
    return _whole(value, name, 0, "0 or a positive integer")
