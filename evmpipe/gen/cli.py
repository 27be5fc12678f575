"""The `evmpipe gen` subcommand: `add_gen_parser(subparsers)` and `cmd_gen(args)`."""
from __future__ import annotations

import argparse
import sys

from evmpipe.gen.kinds import ALL_KINDS, KIND_HELP


def add_gen_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {kind:<22} {KIND_HELP[kind]}" for kind in ALL_KINDS)
    kinds += (
        "\n  state                  a mainnet-shaped genesis datadir: --datadir D --accounts N (docs/STATE.md)"
        "\n\nwith --state D (a gen-state datadir, read only): transfers-independent, erc20, amm or mixed blocks whose"
        "\nusers are drawn from D with a Zipf skew, written as a native block file that needs D's state"
    )
    parser = subparsers.add_parser(
        "gen",
        help="generate a deterministic workload (a BlockchainTest fixture of sealed Cancun blocks)",
        description=(
            "Generate a deterministic, realistic workload: blocks of signed legacy and EIP-1559\n"
            "transactions from many senders, all tipping one fee recipient, executed and sealed\n"
            "by py-evm (correct state, transaction, receipt and withdrawal roots), written as an\n"
            "ethereum/tests BlockchainTest (network Cancun, chain id 1). The same arguments\n"
            "always give the same bytes."
        ),
        epilog="kinds:\n" + kinds,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=ALL_KINDS + ("state",), metavar="KIND", help="workload kind: " + ", ".join(ALL_KINDS) + "; or `state`: a mainnet-shaped genesis datadir")
    parser.add_argument("-o", "--output", metavar="OUT", help="output file (workloads); gzip-compressed when it ends in .gz")
    parser.add_argument("--blocks", type=int, default=4, help="number of blocks (default 4)")
    parser.add_argument("--txs", type=int, default=250, help="transactions per block (default 250)")
    parser.add_argument("--seed", type=int, default=1, help="PRNG seed: keys, amounts, fees, order (default 1)")
    parser.add_argument("--pools", type=int, default=None, help="AMM pools (amm: 8, mixed: 4); --pools 1 makes amm fully serial")
    parser.add_argument("--hot", type=float, default=None, help="fraction of transfers to or from hot exchange wallets (transfers-hot: 0.3, mixed: 0.15)")
    parser.add_argument("--hot-wallets", type=int, default=None, help="number of hot wallets (transfers-hot: 4, mixed: 3)")
    parser.add_argument("--accounts", type=int, default=None, help="keyed user accounts in genesis (default: about 2 x --txs; amm 1.25 x)")
    parser.add_argument("--tokens", type=int, default=None, help="ERC-20 tokens (erc20: 1, mixed: 4; amm uses 2 per pool)")
    parser.add_argument("--withdrawals", type=int, default=None, help="EIP-4895 withdrawals per block (mixed: 16, others 0)")
    parser.add_argument("--stale", type=float, default=0.02, help="fraction of swaps with a stale quote, which revert (default 0.02)")
    parser.add_argument("--legacy", type=float, default=0.15, help="fraction of legacy (EIP-155) transactions (default 0.15)")
    big = parser.add_argument_group("big states", "`gen state --datadir D --accounts N` writes a mainnet-shaped genesis state (docs/OPERATIONS.md);\n`gen KIND --state D -o FILE` writes a native block file over it")
    big.add_argument("--datadir", metavar="D", help="gen state: the datadir to create (must not exist or be empty)")
    big.add_argument("--state", metavar="D", help="a datadir made by `gen state`: draw the workload's users from it (read only)")
    big.add_argument("--contracts", type=int, default=None, help="gen state: token contracts (default accounts/5000, at least 4); holder counts follow Zipf's law")
    big.add_argument("--slots", type=int, default=None, help="gen state: token holder slots in all (default 2 x accounts)")
    big.add_argument("--keyed", type=int, default=None, help="gen state: EOAs with keys, the possible senders (default accounts/16, at least 2000)")
    big.add_argument("--gas-limit", type=int, default=30_000_000, help="gen state: the genesis gas limit, which workloads keep (default 30M)")
    big.add_argument("--jobs", type=int, default=None, help="gen state: processes that build (default: 2, or 1 on one core)")
    big.add_argument("--quiet", action="store_true", help="gen state: no progress output")
    big.add_argument("--trie-scheme", choices=("hash", "halfpath"), default=None, help="gen state: how trie nodes are keyed (default: what new datadirs get; docs/STATE.md)")
    big.add_argument("--slot-reads", type=int, default=None, help="with --state: extra storage reads per block, by reader transactions (default 1200 for amm and mixed, 0 otherwise; docs/STATE.md)")
    big.add_argument("--reads-per-tx", type=int, default=40, help="with --state: balanceOf reads per reader transaction (default 40)")
    big.add_argument("--absent-reads", type=float, default=0.5, help="with --state: share of those reads that probe an absent slot (default 0.5)")
    big.add_argument("--swap-share", type=float, default=None, help="with --state, mixed: share of swaps (default 0.2; ETH 45 %%, ERC-20 35 %%)")
    parser.set_defaults(func=cmd_gen)
    return parser


def cmd_gen(args: argparse.Namespace) -> int:
    if args.kind == "state":
        return cmd_gen_state(args)
    if args.output is None:
        print("evmpipe gen: -o/--output is required", file=sys.stderr)
        return 2
    if args.state is not None:
        from evmpipe.gen.overstate import cmd_gen_over_state

        return cmd_gen_over_state(args)
    from evmpipe.gen.builder import generate
    from evmpipe.gen.workloads import GenerationError, GenParams

    params = GenParams(
        kind=args.kind, blocks=args.blocks, txs=args.txs, seed=args.seed, pools=args.pools, hot=args.hot,
        hot_wallets=args.hot_wallets, accounts=args.accounts, tokens=args.tokens, withdrawals=args.withdrawals,
        stale=args.stale, legacy=args.legacy,
    )
    try:
        workload = generate(params)
        size = workload.write(args.output)
    except GenerationError as exc:
        print(f"evmpipe gen: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"evmpipe gen: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    s = workload.stats
    if args.kind == "prague":
        print(
            f"{args.output}: {workload.name}: {s['blocks']} blocks, {s['transactions']} txs ({s['setCode']} set-code with "
            f"{s['authorizations']} authorizations, {s['blobs']} blobs), {size:,} bytes, {workload.seconds:.1f} s"
        )
        return 0
    print(
        f"{args.output}: {workload.name}: {len(s['gasUsedPerBlock'])} blocks, {s['transactions']} txs "
        f"({s['legacyTransactions']} legacy, {s['reverted']} reverted, {s['distinctSenders']} senders), "
        f"{s['gasUsed'] / 1e6:.2f} Mgas ({s['gasLimitUtilization']:.0%} of {s['gasLimit'] / 1e6:g} Mgas blocks), "
        f"{size:,} bytes, {workload.seconds:.1f} s"
    )
    return 0


def cmd_gen_state(args: argparse.Namespace) -> int:
    import json

    from evmpipe.gen.genstate import BuildError, build_state
    from evmpipe.gen.shape import ShapeError, StateShape

    if args.datadir is None or args.accounts is None:
        print("evmpipe gen state: --datadir and --accounts are required", file=sys.stderr)
        return 2
    shape = StateShape(accounts=args.accounts, seed=args.seed, tokens=args.contracts, pools=args.pools, slots=args.slots, keyed=args.keyed, gas_limit=args.gas_limit)
    if args.jobs is not None and args.jobs < 1:
        print("evmpipe gen state: --jobs must be at least 1", file=sys.stderr)
        return 2
    import signal

    def stop(signum: int, frame: object) -> None:  # SIGTERM: clean up as for Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        scheme = {} if args.trie_scheme is None else {"trie_scheme": args.trie_scheme}
        info = build_state(args.datadir, shape, progress=not args.quiet, jobs=args.jobs, **scheme)
    except KeyboardInterrupt:
        print(f"evmpipe gen state: interrupted; nothing was written to {args.datadir}", file=sys.stderr)
        return 130
    except (ShapeError, BuildError) as exc:
        print(f"evmpipe gen state: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"datadir": str(args.datadir), **info}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `gen` alone (`python -m evmpipe.gen.cli KIND -o OUT ...`)."""
    parser = argparse.ArgumentParser(prog="evmpipe")
    sub = parser.add_subparsers(dest="command", required=True)
    add_gen_parser(sub)
    args = parser.parse_args(["gen", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
