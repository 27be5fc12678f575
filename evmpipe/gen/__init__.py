"""`evmpipe gen KIND`: deterministic, realistic workloads as BlockchainTest fixtures.

    from evmpipe.gen import GenParams, generate
    workload = generate(GenParams("amm", blocks=4, txs=250, seed=1, pools=8))
    workload.write("amm.json.gz")

Same parameters, same bytes. Modules: `keys` (seeded keys), `contracts` (the Vyper ERC-20
and constant-product pair, their storage layout and math), `workloads` (the world at
genesis and the per-kind planners), `builder` (sealing with py-evm, fixture JSON),
`cli` (the subcommand), `kinds` (the kind names). The names below load lazily, so
importing `evmpipe.gen.cli` for the argument parser does not import py-evm.
"""
from __future__ import annotations

from typing import Any

from evmpipe.gen.kinds import KIND_HELP, KINDS

_LAZY = {
    "GenParams": "evmpipe.gen.workloads",
    "GenerationError": "evmpipe.gen.workloads",
    "Workload": "evmpipe.gen.builder",
    "generate": "evmpipe.gen.builder",
}

__all__ = ["GenParams", "GenerationError", "KINDS", "KIND_HELP", "Workload", "generate"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evmpipe.gen' has no attribute {name!r}")
