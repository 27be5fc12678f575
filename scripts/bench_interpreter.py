"""Per-transaction cost of the interpreter loops: evmpipe's lean loop against py-evm's.

For each BlockchainTest workload file, the first block's transactions run through
`execution.block.execute_block` (evmpipe's own setup: `make_vm` over a
`RecordingAccountDB`, the pre-state in memory, senders recovered beforehand), once per
loop and run, alternating; the table gives the median and the best CPU microseconds
per transaction and their ratios (on a shared machine the best run is the least
disturbed). `lean` is what `--interpreter lean` runs: the lean loop and the lean VM's
per-transaction steps (`execution/lean_vm.py`); `--split` also times the lean loop
alone on py-evm's VM, to show what each part gives. `--profile N` adds a cProfile of
the lean loop on each file: what remains of the per-transaction cost, by function
and by group.

    python scripts/bench_interpreter.py ../shared/workloads/erc20_b4_t250_s1.json.gz --runs 5
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import rlp
from eth_hash.auto import keccak

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import execution  # noqa: E402,F401  (keccak backend first)
from consensus_stub.fixture import hex_bytes  # noqa: E402
from evmpipe.bench import _load_single_test  # noqa: E402
from execution.account_db import DictState  # noqa: E402
from execution.block import execute_block, make_vm  # noqa: E402
from execution.decode import mark_sender  # noqa: E402
from execution.forks import INTERPRETERS, schedule_for_network, set_interpreter  # noqa: E402
from state.account import Account  # noqa: E402


def memory_state(pre: dict[str, Any]) -> DictState:
    """The fixture's pre-state as evmpipe's `StateReader` (read-only)."""
    accounts: dict[bytes, Account] = {}
    storage: dict[bytes, dict[int, int]] = {}
    code: dict[bytes, bytes] = {}
    for address, fields in pre.items():
        raw = hex_bytes(address)
        body = hex_bytes(fields.get("code", "0x"))
        accounts[raw] = Account(nonce=int(fields["nonce"], 16), balance=int(fields["balance"], 16), code_hash=keccak(body))
        code[keccak(body)] = body
        storage[raw] = {int(k, 16): int(v, 16) for k, v in fields.get("storage", {}).items()}
    return DictState(accounts, storage, code)


#: The lean loop on py-evm's own VM, without the lean VM's per-transaction steps.
LOOP_ONLY = "lean-loop-only"


@functools.lru_cache(maxsize=None)
def _loop_only(vm_class: Any) -> Any:
    from execution.interpreter import lean_computation

    state = vm_class.get_state_class()
    lean_state = state.configure(__name__=f"LoopOnly{state.__name__}", computation_class=lean_computation(state.computation_class))
    return vm_class.configure(__name__=f"LoopOnly{vm_class.__name__}", _state_class=lean_state)


def _first_block(test: dict[str, Any], loop: str) -> tuple[Any, Any, list[bytes], int]:
    set_interpreter("pyevm" if loop == LOOP_ONLY else loop)
    schedule = schedule_for_network(test["network"])
    entry = test["blocks"][0]
    number, timestamp = int(entry["blockHeader"]["number"], 16), int(entry["blockHeader"]["timestamp"], 16)
    vm_class = schedule.vm_class(number, timestamp)
    if loop == LOOP_ONLY:
        vm_class = _loop_only(vm_class)
    block = rlp.decode(hex_bytes(entry["rlp"]), sedes=vm_class.get_block_class())
    for tx in block.transactions:
        mark_sender(tx, tx.sender)  # recovered once, before timing
    return vm_class, block, [hex_bytes(test["genesisBlockHeader"]["hash"])], schedule.chain_id


def time_block(test: dict[str, Any], reader: DictState, loop: str) -> float:
    """CPU seconds of this process to execute the first block's transactions with
    `loop` (VM setup untimed). CPU, not wall: on a shared machine the wall clock also
    counts the time other processes held the core."""
    vm_class, block, prev, chain_id = _first_block(test, loop)
    vm = make_vm(vm_class, block.header, reader, prev, chain_id)
    started = time.process_time()
    result = execute_block(vm, block)
    elapsed = time.process_time() - started
    if result.gas_used != block.header.gas_used:
        raise SystemExit(f"{loop}: gas used {result.gas_used} != header {block.header.gas_used}")
    return elapsed


# Where a function's own time goes, by the first pattern its file:function matches.
GROUPS = (
    ("lean loop (execution/interpreter.py)", ("execution/interpreter.py",)),
    ("lean VM steps: message, receipt, bloom (execution/lean_vm.py)", ("execution/lean_vm.py", "state/trie.py")),
    ("py-evm opcodes run as fallback (CALL family, EXP, ...)", ("eth/vm/logic/", "eth/vm/forks/berlin/logic.py", "eth/vm/opcode.py", "eth/precompiles/")),
    ("storage and accounts (evmpipe's RecordingAccountDB, py-evm's State layer)", ("execution/account_db.py", "eth/vm/state.py", "eth/db/")),
    ("keccak", ("eth_hash", "keccak")),
    ("receipts and blooms", ("receipt", "bloom", "eth/rlp/logs.py")),
    ("py-evm message and computation setup, finalization", ("eth/vm/computation.py", "eth/vm/message.py", "eth/vm/transaction_context.py", "eth/vm/forks/", "eth/vm/gas_meter.py", "eth/vm/stack.py", "eth/vm/memory.py", "eth/vm/code_stream.py")),
    ("transaction objects, RLP, validation", ("rlp/", "eth/rlp/", "eth/validation.py", "eth_utils", "eth/_utils", "execution/checks.py")),
    ("evmpipe's block execution", ("execution/",)),
    ("builtins called from everywhere (len, list.append/pop, int.from_bytes, ...)", ("~:",)),
)


def profile_block(test: dict[str, Any], reader: DictState, loop: str, top: int) -> str:
    """cProfile of one block: the `top` costliest functions, and shares by group."""
    vm_class, block, prev, chain_id = _first_block(test, loop)
    vm = make_vm(vm_class, block.header, reader, prev, chain_id)
    profiler = cProfile.Profile()
    profiler.enable()
    execute_block(vm, block)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    shares: dict[str, float] = {}
    total = 0.0
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{function}"
        group = next((name for name, patterns in GROUPS if any(p in where for p in patterns)), "other")
        shares[group] = shares.get(group, 0.0) + tottime
        total += tottime
    out.write("share of the profiled time (own time, by group):\n")
    for group, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        out.write(f"  {seconds / total:6.1%}  {group}\n")
    return out.getvalue()


def time_message(test: dict[str, Any], reader: DictState, loop: str, runs: int) -> float:
    """Best CPU seconds of the first transaction's call alone (`apply_message`: the
    loop, its child calls and storage, no transaction or receipt work)."""
    from eth.vm.message import Message

    vm_class, block, prev, chain_id = _first_block(test, loop)
    tx = block.transactions[0]
    best = float("inf")
    for _ in range(runs):
        vm = make_vm(vm_class, block.header, reader, prev, chain_id)
        state = vm.state
        state._account_db.begin_transaction()
        state.mark_address_warm(tx.sender)
        state.mark_address_warm(tx.to)
        message = Message(gas=tx.gas, to=tx.to, sender=tx.sender, value=tx.value, data=tx.data, code=state.get_code(tx.to))
        context = state.get_transaction_context_class()(gas_price=1, origin=tx.sender)
        started = time.process_time()
        state.computation_class.apply_message(state, message, context)
        best = min(best, time.process_time() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=int, metavar="N", help="print the N costliest functions of a lean run of each file, and shares by group")
    parser.add_argument("--message-runs", type=int, default=0, metavar="N", help="also time the first transaction's call alone, best of N, per loop")
    parser.add_argument("--split", action="store_true", help=f"also time the lean loop alone on py-evm's VM ({LOOP_ONLY})")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    rows = []
    for path in args.files:
        _, test = _load_single_test(path)
        reader = memory_state(test["pre"])
        txs = len(test["blocks"][0].get("transactions", []))
        loops = (*INTERPRETERS, LOOP_ONLY) if args.split else INTERPRETERS
        times: dict[str, list[float]] = {loop: [] for loop in loops}
        for loop in loops:  # warm-up: code analysis, imports, caches
            time_block(test, reader, loop)
        for _ in range(args.runs):
            for loop in loops:
                times[loop].append(time_block(test, reader, loop))
        lean, stock = statistics.median(times["lean"]), statistics.median(times["pyevm"])
        lean_best, stock_best = min(times["lean"]), min(times["pyevm"])
        row = {
            "file": Path(path).name, "txs": txs,
            "pyevm_us_per_tx": stock / txs * 1e6, "lean_us_per_tx": lean / txs * 1e6, "ratio": stock / lean,
            "pyevm_best_us_per_tx": stock_best / txs * 1e6, "lean_best_us_per_tx": lean_best / txs * 1e6, "ratio_best": stock_best / lean_best,
        }
        if args.split:
            only, only_best = statistics.median(times[LOOP_ONLY]), min(times[LOOP_ONLY])
            row.update(loop_only_us_per_tx=only / txs * 1e6, loop_only_ratio=stock / only, loop_only_best_us_per_tx=only_best / txs * 1e6, loop_only_ratio_best=stock_best / only_best)
            print(f"{row['file']:42} {txs:5} txs  lean loop alone on py-evm's VM: median {only / txs * 1e6:7.0f} µs/tx {stock / only:.2f}x  best {only_best / txs * 1e6:7.0f} µs/tx {stock_best / only_best:.2f}x")
        if args.message_runs:
            stock_msg, lean_msg = (time_message(test, reader, loop, args.message_runs) for loop in ("pyevm", "lean"))
            row.update(pyevm_message_us=stock_msg * 1e6, lean_message_us=lean_msg * 1e6, message_ratio=stock_msg / lean_msg)
            print(f"{row['file']:42} first call alone, best of {args.message_runs}: pyevm {stock_msg * 1e6:7.0f} lean {lean_msg * 1e6:7.0f} µs {stock_msg / lean_msg:.2f}x")
        rows.append(row)
        print(
            f"{row['file']:42} {txs:5} txs  median: pyevm {row['pyevm_us_per_tx']:7.0f} lean {row['lean_us_per_tx']:7.0f} µs/tx {row['ratio']:.2f}x"
            f"  best: pyevm {row['pyevm_best_us_per_tx']:7.0f} lean {row['lean_best_us_per_tx']:7.0f} µs/tx {row['ratio_best']:.2f}x",
            flush=True,
        )
    if args.profile:
        for path in args.files:
            _, test = _load_single_test(path)
            reader = memory_state(test["pre"])
            time_block(test, reader, "lean")  # warm
            print(f"-- {Path(path).name}, lean loop --")
            print(profile_block(test, reader, "lean", args.profile))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
