"""Which py-evm VM runs a block: fork schedules by block number or by timestamp.

A `ForkSchedule` is the chain's configuration (what geth's genesis `config` says):
a list of activations, each by block number or by timestamp. The BlockchainTest
network names map onto schedules here, so fixtures and recorded files use the same
code path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Type

from eth.abc import VirtualMachineAPI
from eth.chains.mainnet import MainnetDAOValidatorVM
from eth.vm.forks import (
    BerlinVM,
    ByzantiumVM,
    CancunVM,
    ConstantinopleVM,
    FrontierVM,
    GrayGlacierVM,
    HomesteadVM,
    IstanbulVM,
    LondonVM,
    ParisVM,
    PetersburgVM,
    PragueVM,
    ShanghaiVM,
    SpuriousDragonVM,
    TangerineWhistleVM,
)

VMClass = Type[VirtualMachineAPI]

FORKS: dict[str, VMClass] = {
    "Frontier": FrontierVM,
    "Homestead": HomesteadVM.configure(support_dao_fork=False),
    "EIP150": TangerineWhistleVM,
    "EIP158": SpuriousDragonVM,
    "Byzantium": ByzantiumVM,
    "Constantinople": ConstantinopleVM,
    "ConstantinopleFix": PetersburgVM,
    "Istanbul": IstanbulVM,
    "Berlin": BerlinVM,
    "London": LondonVM,
    "GrayGlacier": GrayGlacierVM,
    "Paris": ParisVM,
    "Shanghai": ShanghaiVM,
    "Cancun": CancunVM,
    "Prague": PragueVM,
}

# The first fork of each "XToYAtZ" transition network in ethereum/tests.
_DAO_HOMESTEAD = MainnetDAOValidatorVM.configure(support_dao_fork=True, _dao_fork_block_number=5)


@dataclass(frozen=True)
class Activation:
    fork: str
    block: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class ForkSchedule:
    """Forks in activation order; the last one whose condition holds applies."""

    activations: tuple[Activation, ...]
    chain_id: int = 1
    dao_fork_block: int | None = None

    def fork_at(self, number: int, timestamp: int) -> str:
        current = self.activations[0].fork
        for activation in self.activations:
            if activation.block is not None and number >= activation.block:
                current = activation.fork
            elif activation.timestamp is not None and timestamp >= activation.timestamp:
                current = activation.fork
        return current

    def vm_class(self, number: int, timestamp: int) -> VMClass:
        fork = self.fork_at(number, timestamp)
        if fork == "Homestead" and self.dao_fork_block is not None:
            return MainnetDAOValidatorVM.configure(support_dao_fork=True, _dao_fork_block_number=self.dao_fork_block)
        return FORKS[fork]

    def to_dict(self) -> dict:
        return {
            "chain_id": self.chain_id,
            "dao_fork_block": self.dao_fork_block,
            "activations": [{"fork": a.fork, "block": a.block, "timestamp": a.timestamp} for a in self.activations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ForkSchedule:
        return cls(
            activations=tuple(Activation(a["fork"], a.get("block"), a.get("timestamp")) for a in data["activations"]),
            chain_id=data.get("chain_id", 1),
            dao_fork_block=data.get("dao_fork_block"),
        )


def schedule_for_network(network: str, chain_id: int = 1) -> ForkSchedule:
    """The fork schedule an ethereum/tests network name stands for."""
    if network in FORKS:
        return ForkSchedule((Activation(network, block=0),), chain_id)
    transitions = {
        "FrontierToHomesteadAt5": (Activation("Frontier", block=0), Activation("Homestead", block=5)),
        "HomesteadToEIP150At5": (Activation("Homestead", block=0), Activation("EIP150", block=5)),
        "EIP158ToByzantiumAt5": (Activation("EIP158", block=0), Activation("Byzantium", block=5)),
        "ByzantiumToConstantinopleFixAt5": (Activation("Byzantium", block=0), Activation("ConstantinopleFix", block=5)),
        "BerlinToLondonAt5": (Activation("Berlin", block=0), Activation("London", block=5)),
        "ArrowGlacierToParisAtDiffC0000": (Activation("GrayGlacier", block=0), Activation("Paris", block=6)),
        "ParisToShanghaiAtTime15k": (Activation("Paris", block=0), Activation("Shanghai", timestamp=15_000)),
        "ShanghaiToCancunAtTime15k": (Activation("Shanghai", block=0), Activation("Cancun", timestamp=15_000)),
        "CancunToPragueAtTime15k": (Activation("Cancun", block=0), Activation("Prague", timestamp=15_000)),
    }
    if network in transitions:
        return ForkSchedule(transitions[network], chain_id)
    if network == "HomesteadToDaoAt5":
        return ForkSchedule((Activation("Homestead", block=0),), chain_id, dao_fork_block=5)
    raise ValueError(f"unknown network {network!r}: evmpipe knows {sorted(FORKS)} and the ethereum/tests transitions")


def is_merged(vm_class: VMClass) -> bool:
    return issubclass(vm_class, ParisVM)


def header_field(header: Any, name: str) -> Any:
    """A header field, or None where the header's fork has no such field."""
    try:
        return getattr(header, name)
    except AttributeError:  # py-evm raises it for fields of later forks
        return None
