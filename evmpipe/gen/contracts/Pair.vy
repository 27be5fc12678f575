# pragma version 0.4.3
# @license MIT
"""
@title Pair
@notice A Uniswap-V2-like constant-product pool over two ERC-20 tokens, for evmpipe's
        workload generator.
@dev Unlike Uniswap V2 the pair pulls the input itself (`transferFrom`, so traders
     approve the pair once) and checks the trader's slippage bound before touching
     any token: a stale quote reverts with "slippage" and makes no nested call.
     Reserves live packed in ONE slot, as in Uniswap V2:
     reserve0 (bits 0..111) | reserve1 (bits 112..223) | blockTimestampLast (224..255).
     Deployed straight into the genesis allocation (no constructor). Storage layout
     (see `vyper -f layout`): token0 slot 0, token1 slot 1, reserves slot 2,
     price0CumulativeLast slot 3, price1CumulativeLast slot 4. The re-entrancy lock
     is in transient storage (EIP-1153).
"""

interface IERC20:
    def transfer(receiver: address, amount: uint256) -> bool: nonpayable
    def transferFrom(owner: address, receiver: address, amount: uint256) -> bool: nonpayable
    def balanceOf(owner: address) -> uint256: view

event Sync:
    reserve0: uint256
    reserve1: uint256

event Swap:
    sender: indexed(address)
    amount0In: uint256
    amount1In: uint256
    amount0Out: uint256
    amount1Out: uint256
    to: indexed(address)

MASK112: constant(uint256) = 2**112 - 1
FEE_NUM: constant(uint256) = 997
FEE_DEN: constant(uint256) = 1000

token0: public(address)
token1: public(address)
reserves: uint256
price0CumulativeLast: public(uint256)
price1CumulativeLast: public(uint256)


@view
@external
def getReserves() -> (uint256, uint256, uint256):
    packed: uint256 = self.reserves
    return packed & MASK112, (packed >> 112) & MASK112, packed >> 224


@view
@external
def getAmountOut(zero_for_one: bool, amount_in: uint256) -> uint256:
    packed: uint256 = self.reserves
    r0: uint256 = packed & MASK112
    r1: uint256 = (packed >> 112) & MASK112
    if zero_for_one:
        return self._amount_out(amount_in, r0, r1)
    return self._amount_out(amount_in, r1, r0)


@pure
@internal
def _amount_out(amount_in: uint256, reserve_in: uint256, reserve_out: uint256) -> uint256:
    with_fee: uint256 = amount_in * FEE_NUM
    return with_fee * reserve_out // (reserve_in * FEE_DEN + with_fee)


@external
@nonreentrant
def swap(zero_for_one: bool, amount_in: uint256, min_out: uint256, to: address) -> uint256:
    """
    @notice Sell `amount_in` of token0 (`zero_for_one`) or token1 for at least `min_out`
            of the other token, sent to `to`.
    """
    packed: uint256 = self.reserves
    r0: uint256 = packed & MASK112
    r1: uint256 = (packed >> 112) & MASK112
    amount_out: uint256 = 0
    if zero_for_one:
        amount_out = self._amount_out(amount_in, r0, r1)
    else:
        amount_out = self._amount_out(amount_in, r1, r0)
    assert amount_out >= min_out, "slippage"
    assert amount_out > 0, "insufficient output"

    t0: address = self.token0
    t1: address = self.token1
    if zero_for_one:
        assert extcall IERC20(t0).transferFrom(msg.sender, self, amount_in)
        assert extcall IERC20(t1).transfer(to, amount_out)
    else:
        assert extcall IERC20(t1).transferFrom(msg.sender, self, amount_in)
        assert extcall IERC20(t0).transfer(to, amount_out)

    b0: uint256 = staticcall IERC20(t0).balanceOf(self)
    b1: uint256 = staticcall IERC20(t1).balanceOf(self)
    assert b0 <= MASK112 and b1 <= MASK112, "overflow"
    assert b0 * b1 >= r0 * r1, "K"

    now: uint256 = block.timestamp % 2**32
    elapsed: uint256 = unsafe_sub(now, packed >> 224) % 2**32
    if elapsed > 0 and r0 != 0 and r1 != 0:
        # UQ112x112 price accumulators; they wrap around like Uniswap V2's
        self.price0CumulativeLast = unsafe_add(self.price0CumulativeLast, unsafe_mul((r1 << 112) // r0, elapsed))
        self.price1CumulativeLast = unsafe_add(self.price1CumulativeLast, unsafe_mul((r0 << 112) // r1, elapsed))
    self.reserves = b0 | (b1 << 112) | (now << 224)
    log Sync(reserve0=b0, reserve1=b1)
    if zero_for_one:
        log Swap(sender=msg.sender, amount0In=amount_in, amount1In=0, amount0Out=0, amount1Out=amount_out, to=to)
    else:
        log Swap(sender=msg.sender, amount0In=0, amount1In=amount_in, amount0Out=amount_out, amount1Out=0, to=to)
    return amount_out
