"""The blocktest summary: a table per folder, totals, failures, rejection reasons, JSON.

The text report has four parts:

1. one row per folder: the first two directories below ``BlockchainTests/``
   (``GeneralStateTests/stCreate2``, ``InvalidBlocks/bcUncleTest``), with tests passed,
   failed, skipped and the seconds the engine spent on them;
2. the totals;
3. every failure as ``path::name: error``;
4. rejection reasons: how many blocks the engine rejected, how many of those rejections
   gave a reason listed in the fixture's ``expectException``, and each disagreement
   (ours vs expected) with its count and one example.

It is drawn with rich tables when the stream is a terminal, as plain aligned text
otherwise. ``--json FILE`` writes the machine-readable report (:func:`write_json_report`).
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, TextIO

from evmpipe.blocktest.discover import ANCHOR_DIR
from evmpipe.blocktest.result import BlockOutcome, Counts, TestResult

TOP_LEVEL_GROUP = "(top level)"
# Beyond this many, failures are counted but not listed (the JSON report has them all).
MAX_LISTED_FAILURES = 200
ACCEPTED = "(accepted)"
VALID = "(valid block)"


def group_of(path: str) -> str:
    """The report folder of a fixture path: its first two directories below ``BlockchainTests/``."""
    parts = PurePosixPath(path).parts
    dirs = list(parts[:-1])
    if ANCHOR_DIR in dirs:
        dirs = dirs[len(dirs) - 1 - dirs[::-1].index(ANCHOR_DIR) + 1:]
    return "/".join(dirs[:2]) or TOP_LEVEL_GROUP




@dataclass
class RejectionSummary:
    """How the engine's rejections compare with ``expectException``."""

    invalid_blocks: int = 0  # blocks the fixtures expect to be rejected
    rejected: int = 0  # blocks the engine rejected
    matched: int = 0  # rejected, with a reason among the expected alternatives
    wrong_reason: int = 0  # rejected an invalid block, for another reason
    invalid_accepted: int = 0  # imported a block that should have been rejected
    valid_rejected: int = 0  # rejected a block that should have been imported
    # (ours, expected) -> [count, first example as "path::name#block-index"]
    mismatches: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


def summarize_rejections(results: Iterable[TestResult]) -> RejectionSummary:
    summary = RejectionSummary()
    for result in results:
        for block in result.blocks:
            if block.expected_exception:
                summary.invalid_blocks += 1
            if block.rejected:
                summary.rejected += 1
            verdict = block.reason_matches
            if verdict is None:
                continue
            if verdict:
                summary.matched += 1
                continue
            ours, expected = _mismatch_key(block)
            if block.expected_exception and block.rejected:
                summary.wrong_reason += 1
            elif block.expected_exception:
                summary.invalid_accepted += 1
            else:
                summary.valid_rejected += 1
            entry = summary.mismatches.setdefault((ours, expected), [0, f"{result.test_id}#{block.index}"])
            entry[0] += 1
    return summary


def _mismatch_key(block: BlockOutcome) -> tuple[str, str]:
    ours = (block.reason or "(no reason)") if block.rejected else ACCEPTED
    return ours, block.expected_exception or VALID


def totals_of(results: Sequence[TestResult]) -> dict[str, Any]:
    """The ``totals`` object of the JSON report."""
    counts = Counts()
    for result in results:
        counts.add(result)
    rejections = summarize_rejections(results)
    return {
        "files": len({r.path for r in results}),
        **asdict(counts),
        "blocks": sum(len(r.blocks) for r in results),
        "invalid_blocks": rejections.invalid_blocks,
        "rejected_blocks": rejections.rejected,
        "rejections_matched": rejections.matched,
        "rejections_wrong_reason": rejections.wrong_reason,
        "invalid_blocks_accepted": rejections.invalid_accepted,
        "valid_blocks_rejected": rejections.valid_rejected,
    }


def write_json_report(
    path: str | os.PathLike[str],
    results: Sequence[TestResult],
    *,
    engine: str,
    started: str,
    wall_seconds: float,
    jobs: int,
) -> dict[str, Any]:
    """Write the machine-readable report to ``path`` and return it."""
    report = {
        "engine": engine,
        "started": started,
        "wall_seconds": round(wall_seconds, 3),
        "jobs": jobs,
        "totals": totals_of(results),
        "results": [r.to_dict() for r in results],
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1)
        out.write("\n")
    return report


def load_json_report(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[TestResult]]:
    """Read a report written by :func:`write_json_report`: (everything but results, results)."""
    with open(path, encoding="utf-8") as src:
        report = json.load(src)
    results = [TestResult.from_dict(r) for r in report.pop("results")]
    return report, results


# -- text ------------------------------------------------------------------------------


def print_report(
    results: Sequence[TestResult],
    *,
    engine: str,
    wall_seconds: float,
    jobs: int,
    stream: TextIO | None = None,
    rich: bool | None = None,
    quiet: bool = False,
) -> None:
    """Print the summary to ``stream`` (stdout); rich tables if it is a terminal.

    ``quiet`` leaves out the per-folder table and keeps totals, failures and rejections.
    """
    stream = stream or sys.stdout
    use_rich = rich if rich is not None else _isatty(stream)
    sections = _build_sections(results, engine=engine, wall_seconds=wall_seconds, jobs=jobs, quiet=quiet)
    if use_rich:
        _print_rich(sections, stream)
    else:
        _print_plain(sections, stream)


@dataclass
class _Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    right_align: set[int]
    footer: list[str] | None = None


def _build_sections(results: Sequence[TestResult], *, engine: str, wall_seconds: float, jobs: int, quiet: bool) -> list[_Table | str]:
    sections: list[_Table | str] = []
    by_group: dict[str, Counts] = defaultdict(Counts)
    total = Counts()
    for result in results:
        by_group[group_of(result.path)].add(result)
        total.add(result)

    num = {1, 2, 3, 4, 5}
    if not quiet:
        rows = [
            [group, str(c.tests), str(c.passed), str(c.failed), str(c.skipped), f"{c.seconds:.1f}"]
            for group, c in sorted(by_group.items())
        ]
        sections.append(_Table(
            title=f"blocktest: engine {engine}",
            header=["folder", "tests", "passed", "failed", "skipped", "seconds"],
            rows=rows,
            right_align=num,
            footer=["total", str(total.tests), str(total.passed), str(total.failed), str(total.skipped), f"{total.seconds:.1f}"],
        ))
    sections.append(
        f"{total.tests} tests in {len({r.path for r in results})} files: {total.passed} passed,"
        f" {total.failed} failed, {total.skipped} skipped; engine {engine}, jobs {jobs},"
        f" {wall_seconds:.1f} s wall, {total.seconds:.1f} s in tests"
    )

    stages: dict[str, float] = defaultdict(float)
    for result in results:
        for stage, seconds in result.stage_seconds.items():
            stages[stage] += seconds
    if stages:
        busy = sum(stages.values()) or 1.0
        sections.append("per-stage busy time (from the stage events): " + ", ".join(f"{stage} {seconds:.1f} s ({100 * seconds / busy:.1f} %)" for stage, seconds in stages.items()))

    failures = [r for r in results if r.failed]
    if failures:
        lines = [f"{r.test_id}: {r.error}" for r in failures[:MAX_LISTED_FAILURES]]
        if len(failures) > MAX_LISTED_FAILURES:
            lines.append(f"... and {len(failures) - MAX_LISTED_FAILURES} more (all are in the --json report)")
        sections.append(_Table(title=f"failures ({len(failures)})", header=[], rows=[[line] for line in lines], right_align=set()))

    rej = summarize_rejections(results)
    sections.append(
        f"rejection reasons: {rej.invalid_blocks} blocks expected invalid, {rej.rejected} rejected,"
        f" {rej.matched} with an expected reason; {rej.wrong_reason} with another reason,"
        f" {rej.invalid_accepted} invalid blocks accepted, {rej.valid_rejected} valid blocks rejected"
    )
    if rej.mismatches:
        rows = [
            [str(count), ours, expected, example]
            for (ours, expected), (count, example) in sorted(rej.mismatches.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]
        sections.append(_Table(
            title="rejection mismatches (ours vs expected)",
            header=["blocks", "ours", "expected", "example"],
            rows=rows,
            right_align={0},
        ))
    return sections


def _print_plain(sections: list[_Table | str], stream: TextIO) -> None:
    for section in sections:
        if isinstance(section, str):
            print(section, file=stream)
            print(file=stream)
            continue
        print(section.title, file=stream)
        if not section.header:
            for row in section.rows:
                print(f"  {row[0]}", file=stream)
            print(file=stream)
            continue
        all_rows = [section.header, *section.rows] + ([section.footer] if section.footer else [])
        widths = [max(len(row[i]) for row in all_rows) for i in range(len(section.header))]

        def fmt(row: list[str]) -> str:
            cells = [
                cell.rjust(widths[i]) if i in section.right_align else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ]
            return "  " + "  ".join(cells).rstrip()

        print(fmt(section.header), file=stream)
        print("  " + "  ".join("-" * w for w in widths), file=stream)
        for row in section.rows:
            print(fmt(row), file=stream)
        if section.footer:
            print("  " + "  ".join("-" * w for w in widths), file=stream)
            print(fmt(section.footer), file=stream)
        print(file=stream)


def _print_rich(sections: list[_Table | str], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream)
    for section in sections:
        if isinstance(section, str):
            console.print(section, highlight=False, markup=False)
            continue
        if not section.header:
            console.print(f"[bold]{section.title}[/bold]")
            for row in section.rows:
                console.print(f"  {row[0]}", highlight=False, markup=False, soft_wrap=True)
            continue
        table = Table(title=section.title, show_footer=section.footer is not None)
        for i, name in enumerate(section.header):
            table.add_column(
                name,
                justify="right" if i in section.right_align else "left",
                footer=section.footer[i] if section.footer else "",
            )
        for row in section.rows:
            table.add_row(*row)
        console.print(table)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

