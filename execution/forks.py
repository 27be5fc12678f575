"""Which py-evm VM runs a block: fork schedules by block number or by timestamp.

A `ForkSchedule` is the chain's configuration (what geth's genesis `config` says):
a list of activations, each by block number or by timestamp. The BlockchainTest
network names map onto schedules here, so fixtures and recorded files use the same
code path.

The interpreter loop is chosen here too, process-wide: `lean` (evmpipe's loop,
`execution/interpreter.py`) or `pyevm` (py-evm's own). The choice lives in the
environment (`EVMPIPE_INTERPRETER`), so worker processes, which are spawned with the
parent's environment, run the same loop without being told.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
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
            return with_interpreter(_dao_vm(self.dao_fork_block))
        return with_interpreter(FORKS[fork])

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


# -- the interpreter loop -------------------------------------------------------------

INTERPRETERS = ("lean", "pyevm")
INTERPRETER_ENV = "EVMPIPE_INTERPRETER"
DEFAULT_INTERPRETER = "lean"  # py-evm's loop stays one flag away: --interpreter pyevm


def interpreter() -> str:
    """The interpreter loop this process runs (`EVMPIPE_INTERPRETER`, else the default)."""
    name = os.environ.get(INTERPRETER_ENV) or DEFAULT_INTERPRETER
    if name not in INTERPRETERS:
        raise ValueError(f"{INTERPRETER_ENV}={name!r}: the interpreter is one of {', '.join(INTERPRETERS)}")
    return name


def set_interpreter(name: str) -> None:
    """Choose the loop for this process and the workers it starts from now on."""
    if name not in INTERPRETERS:
        raise ValueError(f"unknown interpreter {name!r}: one of {', '.join(INTERPRETERS)}")
    os.environ[INTERPRETER_ENV] = name


def with_interpreter(vm_class: VMClass, name: str | None = None) -> VMClass:
    """`vm_class` running the chosen loop: py-evm's VM itself, or its lean twin."""
    if (name or interpreter()) == "pyevm":
        return vm_class
    return _lean_vm(vm_class)


@lru_cache(maxsize=None)
def _lean_vm(vm_class: VMClass) -> VMClass:
    """A subclass of `vm_class` whose state runs the fork's lean computation class,
    with the per-transaction steps of `execution/lean_vm.py` (subclasses, not
    patches: py-evm's classes stay as they are)."""
    from execution.interpreter import lean_computation
    from execution.lean_vm import lean_vm

    state_class = vm_class.get_state_class()
    computation_class = lean_computation(state_class.computation_class)
    if computation_class is state_class.computation_class:
        return vm_class  # the fork overrides what the loop inlines: py-evm's loop
    return lean_vm(vm_class, state_class, computation_class)


@lru_cache(maxsize=None)
def _dao_vm(block: int) -> VMClass:
    return MainnetDAOValidatorVM.configure(support_dao_fork=True, _dao_fork_block_number=block)
