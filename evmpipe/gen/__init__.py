"""`evmpipe gen KIND`: deterministic, realistic workloads as BlockchainTest fixtures.

    from evmpipe.gen import GenParams, generate
    workload = generate(GenParams("amm", blocks=4, txs=250, seed=1, pools=8))
    workload.write("amm.json.gz")

Same parameters, same bytes. Modules: `keys` (seeded keys), `contracts` (the Vyper ERC-20
and constant-product pair, their storage layout and math), `workloads` (the world at
genesis and the per-kind planners), `builder` (sealing with py-evm, fixture JSON),
`cli` (the subcommand).
"""
from evmpipe.gen.builder import Workload, generate
from evmpipe.gen.workloads import KIND_HELP, KINDS, GenerationError, GenParams

__all__ = ["GenParams", "GenerationError", "KINDS", "KIND_HELP", "Workload", "generate"]
