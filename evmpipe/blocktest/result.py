"""What one blockchain test produced, in a form every engine returns.

An engine's ``run_blockchain_test(path, name, test)`` returns a :class:`TestResult`
holding one :class:`BlockOutcome` per entry of the fixture's ``blocks`` list. Both
convert to and from plain JSON-able dicts, so results travel between processes and
into the ``--json`` report unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from evmpipe.blocktest.expect import reason_matches as _reason_matches


@dataclass
class BlockOutcome:
    """How the engine handled one block of a fixture."""

    index: int  # position in the fixture's "blocks" list
    number: int | None  # block number if known
    expected_exception: str | None  # fixture's expectException ("A|B" alternatives)
    rejected: bool  # did the engine reject the block
    reason: str | None  # engine's reason code, ethereum/tests vocabulary
    detail: str | None = None  # free text: which tx, numbers

    @property
    def reason_matches(self) -> bool | None:
        """None: valid block, accepted. True: rejected for one of the expected reasons.

        False otherwise: an invalid block rejected for another reason, an invalid
        block accepted, or a valid block rejected.
        """
        if not self.expected_exception and not self.rejected:
            return None
        if self.expected_exception and self.rejected:
            return _reason_matches(self.expected_exception, self.reason)
        return False

    def problem(self) -> str | None:
        """Why this block's handling fails the test: an invalid block accepted or a
        valid block rejected (None when it was handled as the fixture expects)."""
        where = f"block #{self.index}" + (f" (number {self.number})" if self.number is not None else "")
        if self.expected_exception and not self.rejected:
            return f"{where} was accepted, the fixture expects rejection: {self.expected_exception}"
        if not self.expected_exception and self.rejected:
            return f"{where} rejected unexpectedly: {self.reason} ({self.detail})"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockOutcome:
        return cls(
            index=data["index"],
            number=data.get("number"),
            expected_exception=data.get("expected_exception"),
            rejected=data["rejected"],
            reason=data.get("reason"),
            detail=data.get("detail"),
        )


@dataclass
class TestResult:
    """The outcome of one test (one key of a fixture file) on one engine."""

    __test__ = False  # not a pytest test class, despite the name

    path: str  # file path relative to the input root (tar: member path minus "./")
    name: str  # test name (key in the JSON file)
    network: str
    engine: str  # "pipeline" or "pyevm"
    passed: bool
    error: str | None  # why it failed
    seconds: float
    blocks: list[BlockOutcome] = field(default_factory=list)
    skipped: bool = False  # set by the runner (--skip-slow); never by an engine
    stage_seconds: dict[str, float] = field(default_factory=dict)  # pipeline engine: busy time per stage

    @property
    def test_id(self) -> str:
        """``path::name``, the string ``-k`` patterns and the slow list match against."""
        return f"{self.path}::{self.name}"

    @property
    def failed(self) -> bool:
        return not self.passed and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocks"] = [block.to_dict() for block in self.blocks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            path=data["path"],
            name=data["name"],
            network=data.get("network", ""),
            engine=data.get("engine", ""),
            passed=data["passed"],
            error=data.get("error"),
            seconds=data.get("seconds", 0.0),
            blocks=[BlockOutcome.from_dict(b) for b in data.get("blocks", [])],
            skipped=data.get("skipped", False),
            stage_seconds=data.get("stage_seconds", {}),
        )


@dataclass
class Counts:
    """Tests counted by outcome (the report's folders and the progress line)."""

    tests: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def add(self, result: TestResult) -> None:
        self.tests += 1
        self.seconds += result.seconds
        if result.skipped:
            self.skipped += 1
        elif result.passed:
            self.passed += 1
        else:
            self.failed += 1
