"""What a generated mainnet-shaped state holds, as pure functions of its parameters.

`evmpipe gen state` writes this shape into a datadir; `evmpipe gen KIND --state D`
reads the parameters back from the datadir and uses the same functions to find users
it can sign for and the holders of each token. Nothing here touches a database.

Accounts, in the order of their index:

- EOAs, `eoa_count` of them. The first `keyed` have private keys derived from the seed
  (`keys.private_key_bytes(seed, "user", i)`), so workloads can send from them; the
  rest are addresses nobody holds a key for (the long dormant tail of mainnet).
  Balances are heavy-tailed (dust to whales), a third have never sent (nonce 0).
- Token contracts (the Vyper ERC-20 of `contracts`), `tokens` of them. Token `t` (0 the
  most popular) has about `slots / (t + 1)` holders, scaled so that all tokens together
  hold the slot budget: Zipf's law, as mainnet's token holder counts are (a few tokens
  with millions of holders, a long tail with a handful).
- AMM pools (the constant-product `Pair`) over pairs of the most popular tokens; each
  pool holds its reserves in both tokens.
- Small contracts, `other_share` of all accounts: one of 64 code blobs and 0 to 4 slots
  each (proxies, wallets, dead deployments: most of mainnet's contracts).
- The fork's system contracts: Cancun's beacon-roots contract ([EIP-4788]) with its ring
  buffer full.

[EIP-4788]: https://eips.ethereum.org/EIPS/eip-4788
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property

from eth_hash.auto import keccak

from evmpipe.gen.keys import fresh_address, private_key_bytes

BEACON_ROOTS_ADDRESS = bytes.fromhex("000f3df6d732807ef1319fb7b8bb8522d0beac02")
HISTORY_BUFFER_LENGTH = 8191
OTHER_CODES = 64
OTHER_MAX_SLOTS = 4
SHAPE_VERSION = 1


class ShapeError(ValueError):
    """Parameters that cannot make a state."""


@dataclass(frozen=True)
class StateShape:
    accounts: int
    seed: int = 1
    tokens: int | None = None  # default: accounts // 5000, at least 4
    pools: int | None = None  # default: tokens // 8, at least 1
    slots: int | None = None  # token holder slots in all; default 2 x accounts
    keyed: int | None = None  # EOAs with keys; default accounts // 16, at least 2000
    other_share: float = 0.10
    gas_limit: int = 30_000_000
    version: int = SHAPE_VERSION

    def resolved(self) -> StateShape:
        n = self.accounts
        if n < 64:
            raise ShapeError("--accounts must be at least 64")
        if not 0 <= self.seed < 2**64:
            raise ShapeError("--seed must be in [0, 2**64)")
        tokens = self.tokens if self.tokens is not None else max(4, n // 5000)
        pools = self.pools if self.pools is not None else max(1, tokens // 8)
        if tokens < 2 or pools < 0 or pools > tokens * (tokens - 1) // 2:
            raise ShapeError("need at least 2 tokens, and at most tokens*(tokens-1)/2 pools")
        if not 0.0 <= self.other_share < 0.5:
            raise ShapeError("the share of small contracts must be in [0, 0.5)")
        shape = StateShape(
            accounts=n, seed=self.seed, tokens=tokens, pools=pools,
            slots=self.slots if self.slots is not None else 2 * n,
            keyed=0, other_share=self.other_share, gas_limit=self.gas_limit,
        )
        if shape.eoa_count < 16:
            raise ShapeError(f"{n} accounts leave {shape.eoa_count} EOAs beside {tokens} tokens and {pools} pools")
        keyed = self.keyed if self.keyed is not None else max(2000, n // 16)
        return StateShape(**{**asdict(shape), "keyed": min(keyed, shape.eoa_count)})

    # -- counts ---------------------------------------------------------------------

    @property
    def other_count(self) -> int:
        return int(self.accounts * self.other_share)

    @property
    def eoa_count(self) -> int:
        return self.accounts - 2 - self.tokens - self.pools - self.other_count  # beacon roots, coinbase  # type: ignore[operator]

    def other_slots(self, index: int) -> int:
        return (index * 7 + 3) % (OTHER_MAX_SLOTS + 1)

    @cached_property
    def holders(self) -> list[int]:
        """Holder count of each token: Zipf over the slot budget, capped by the EOAs."""
        weights = [1.0 / (t + 1) for t in range(self.tokens)]  # type: ignore[arg-type]
        total = sum(weights)
        return [max(1, min(self.eoa_count, round(self.slots * w / total))) for w in weights]  # type: ignore[operator]

    @cached_property
    def pool_pairs(self) -> list[tuple[int, int]]:
        """(token0, token1) of each pool: the most popular tokens first."""
        pairs: list[tuple[int, int]] = []
        b = 1
        while len(pairs) < self.pools:  # type: ignore[operator]
            pairs += [(a, b) for a in range(b)]
            b += 1
        return pairs[: self.pools]

    def expected_slots(self) -> int:
        others = sum(self.other_slots(i) for i in range(self.other_count))
        return sum(self.holders) + len(self.holders) + 2 * self.pools + 5 * self.pools + others + 2 * HISTORY_BUFFER_LENGTH  # type: ignore[operator]

    # -- addresses ------------------------------------------------------------------

    def eoa_address(self, index: int) -> bytes:
        if index < self.keyed:  # type: ignore[operator]
            return keyed_address(self.seed, index)
        return fresh_address(self.seed, "eoa", index)

    def token_address(self, t: int) -> bytes:
        return fresh_address(self.seed, "token", t)

    def pool_address(self, p: int) -> bytes:
        return fresh_address(self.seed, "pool", p)

    def other_address(self, i: int) -> bytes:
        return fresh_address(self.seed, "contract", i)

    def coinbase(self) -> bytes:
        return fresh_address(self.seed, "coinbase", 0)

    # -- token holders: holder j of token t is EOA (offset + j * step) mod eoa_count ----

    def _affine(self, t: int) -> tuple[int, int]:
        e = self.eoa_count
        h = int.from_bytes(keccak(b"evmpipe-gen/holders" + self.seed.to_bytes(8, "big") + t.to_bytes(4, "big")), "big")
        offset = h % e
        step = (h >> 64) % e or 1
        while math.gcd(step, e) != 1:
            step = step % (e - 1) + 1
        return offset, step

    def holder_eoa(self, t: int, j: int) -> int:
        offset, step = self._affine(t)
        return (offset + j * step) % self.eoa_count

    def holder_rank(self, t: int, eoa: int) -> int | None:
        """j such that EOA `eoa` is holder j of token t, or None when it holds none."""
        offset, step = self._affine(t)
        j = (eoa - offset) * pow(step, -1, self.eoa_count) % self.eoa_count
        return j if j < self.holders[t] else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> StateShape:
        data = json.loads(text)
        if data.get("version") != SHAPE_VERSION:
            raise ShapeError(f"state shape version {data.get('version')} is not {SHAPE_VERSION}")
        return cls(**data)


def keyed_address(seed: int, index: int) -> bytes:
    """Address of keyed user `index` (coincurve directly: half the cost of eth_keys)."""
    import coincurve

    public = coincurve.PublicKey.from_secret(private_key_bytes(seed, "user", index)).format(compressed=False)[1:]
    return keccak(public)[12:]
