"""What every figure shares: its size, and how a token is written on it."""

from __future__ import annotations

FIGSIZE = (6, 3.5)  # inches; with the default dpi this keeps notebook PNGs small and legible


def visible(token: str) -> str:
    """Show spaces as '␣': a leading space is part of the token, and the most common surprise."""
    return token.replace(" ", "␣")
