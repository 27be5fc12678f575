"""Reading ``expectException`` and comparing it with an engine's reason code.

A fixture block that must be rejected carries ``expectException``: one reason code in
the ethereum/tests vocabulary (``TransactionException.INSUFFICIENT_ACCOUNT_FUNDS``,
``BlockException.INVALID_STATE_ROOT``), or several joined by ``|`` when any of them is
acceptable (``BlockException.RLP_STRUCTURES_ENCODING|BlockException.RLP_INVALID_FIELD_OVERFLOW_64``).
An engine reports why it rejected a block as one code of the same vocabulary; the reason
matches when it is one of the alternatives.
"""

from __future__ import annotations

ALTERNATIVE_SEPARATOR = "|"


def parse_expected(expected: str | None) -> tuple[str, ...]:
    """Split ``expectException`` into its alternatives, stripped of whitespace.

    ``None`` and the empty string give an empty tuple (the block must be accepted).
    """
    if not expected:
        return ()
    return tuple(part.strip() for part in expected.split(ALTERNATIVE_SEPARATOR) if part.strip())


def reason_matches(expected: str | None, reason: str | None) -> bool:
    """Whether the engine's ``reason`` is one of the alternatives of ``expected``.

    False when either side is missing. The comparison is exact after stripping
    whitespace; a reason that itself holds several ``|`` alternatives matches when any
    of them is expected.
    """
    alternatives = parse_expected(expected)
    if not alternatives or not reason:
        return False
    return any(code in alternatives for code in parse_expected(reason))
