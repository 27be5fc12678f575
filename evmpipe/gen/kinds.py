"""The workload kinds of `evmpipe gen` (a module of its own so the CLI loads fast)."""

KINDS = ("transfers-independent", "transfers-hot", "erc20", "amm", "mixed")  # planned Cancun workloads
SCRIPTED_KINDS = ("prague",)  # a fixed script of fork features, plus --txs filler transfers
ALL_KINDS = KINDS + SCRIPTED_KINDS
KIND_HELP = {
    "transfers-independent": "plain ETH transfers; in a block every sender and recipient appears once (about 20% of recipients are fresh addresses)",
    "transfers-hot": "ETH transfers, a fraction (--hot) of them deposits to or withdrawals from a few hot exchange wallets (nonce chains inside a block)",
    "erc20": "transfer() calls on one ERC-20 token, disjoint sender/recipient pairs, some to zero-balance recipients",
    "amm": "swap() on --pools constant-product pairs (each over two tokens of its own), about 2% reverting on a stale quote; --pools 1 is fully serial",
    "mixed": "mainnet-like mix: 45% ETH, 35% ERC-20 over 4 tokens, 20% swaps over --pools pools, hot wallets, repeat senders, 16 withdrawals per block",
    "prague": "Prague chain (network Prague): EIP-7702 set-code txs, EIP-7623 floor txs, 9-blob blocks, deposit/withdrawal/consolidation requests; at least 4 blocks, --txs filler transfers per block",
}
