"""Where the sequential execute thread's time goes: py-spy raw stacks, own time by group.

Takes the samples under `execution.strategies._execute_timed` (the thread that runs a
block's transactions, what `evmpipe bench` times per transaction) and sums each
sample's leaf frame into a group, e.g.

    py-spy record -r 200 -f raw -o spy.txt --nonblocking -- \
        python -m evmpipe.cli bench FILE --runs 4 --skip-pyevm --strategies sequential --loops lean
    python scripts/execute_profile_groups.py spy.txt
"""
import re
import sys

GROUPS = (
    ("lean loop (execution/interpreter.py)", ("execution/interpreter.py",)),
    ("lean VM steps: message, receipt, bloom (execution/lean_vm.py)", ("execution/lean_vm.py", "state/trie.py")),
    ("py-evm CALL family (eth/vm/logic/call.py) and its child setup", ("eth/vm/logic/call.py",)),
    ("py-evm opcodes run as fallback (TLOAD/TSTORE, MCOPY, EXP, ...)", ("eth/vm/logic/", "eth/vm/forks/berlin/logic.py", "eth/vm/opcode.py", "eth/precompiles/", "eth/vm/transient_storage.py")),
    ("state reads below the block: overlay, cache, SQLite misses (state/)", ("state/",)),
    ("storage and accounts (RecordingAccountDB, py-evm's State layer)", ("execution/account_db.py", "eth/vm/state.py", "eth/db/")),
    ("keccak", ("eth_hash", "keccak")),
    ("py-evm message and computation setup, finalization", ("eth/vm/computation.py", "eth/vm/message.py", "eth/vm/transaction_context.py", "eth/vm/forks/", "eth/vm/gas_meter.py", "eth/vm/stack.py", "eth/vm/memory.py", "eth/vm/code_stream.py", "cached_property", "asyncio/", "inspect.py")),
    ("transaction objects, RLP, validation", ("rlp/", "eth/rlp/", "eth/validation.py", "eth_utils", "eth/_utils", "execution/checks.py")),
    ("evmpipe's block execution (BlockRun: begin, per-tx bookkeeping, diff)", ("execution/",)),
)
shares: dict[str, int] = {}
total = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    if "_execute_timed" not in stack:
        continue
    leaf = stack.split(";")[-1]
    m = re.match(r"(.*) \((.*):\d+\)$", leaf)
    where = f"{m.group(2)}:{m.group(1)}" if m else leaf
    g = next((name for name, pats in GROUPS if any(p in where for p in pats)), "other")
    if g == "other":
        g = "other: " + where.split("site-packages/")[-1][:60]
    shares[g] = shares.get(g, 0) + int(n)
    total += int(n)
print(f"{total} samples under _execute_timed")
for g, s in sorted(shares.items(), key=lambda kv: -kv[1])[:14]:
    print(f"{s/total:6.1%}  {g}")
