# pragma version 0.4.3
# @license MIT
"""
@title Token
@notice A minimal ERC-20 token for evmpipe's workload generator.
@dev Deployed by the generator straight into the genesis allocation (runtime code plus
     storage), so there is no constructor: balances, allowances and the total supply
     are written into storage by `evmpipe.gen.contracts`. Storage layout (see
     `vyper -f layout`): balanceOf at slot 0, allowance at slot 1, totalSupply at
     slot 2. An allowance of 2**256 - 1 is infinite and never decremented, as in
     most deployed tokens.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(constant(String[16])) = "evmpipe token"
symbol: public(constant(String[8])) = "EVMP"
decimals: public(constant(uint8)) = 18

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[owner][msg.sender]
    if allowed != max_value(uint256):
        self.allowance[owner][msg.sender] = allowed - amount
    self.balanceOf[owner] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=owner, receiver=receiver, value=amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True
