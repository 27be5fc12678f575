"""Which interpreter loop runs: chosen once per process, inherited by workers."""
from __future__ import annotations

import multiprocessing

import pytest
from eth.vm.forks import CancunVM

from execution import forks
from execution.forks import INTERPRETER_ENV, ForkSchedule, Activation, interpreter, set_interpreter, with_interpreter
from execution.interpreter import LeanComputation


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start unset; whatever a test (or the CLI under test) sets is undone after it."""
    monkeypatch.setenv(INTERPRETER_ENV, "pyevm")  # records the original value for the undo
    monkeypatch.delenv(INTERPRETER_ENV)


def test_default_and_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert interpreter() == forks.DEFAULT_INTERPRETER
    set_interpreter("lean")
    assert interpreter() == "lean"
    with pytest.raises(ValueError, match="unknown interpreter"):
        set_interpreter("evmone")
    monkeypatch.setenv(INTERPRETER_ENV, "fast")
    with pytest.raises(ValueError, match=INTERPRETER_ENV):
        interpreter()


def test_schedule_hands_out_the_chosen_loop() -> None:
    schedule = ForkSchedule((Activation("Cancun", block=0),))
    set_interpreter("pyevm")
    assert schedule.vm_class(1, 0) is CancunVM
    set_interpreter("lean")
    lean = schedule.vm_class(1, 0)
    assert issubclass(lean, CancunVM) and lean is with_interpreter(CancunVM, "lean")
    computation = lean.get_state_class().computation_class
    assert issubclass(computation, LeanComputation) and issubclass(computation, CancunVM.get_state_class().computation_class)
    assert CancunVM.get_state_class().computation_class.apply_computation.__func__ is not computation.apply_computation.__func__  # py-evm's untouched


def _child_interpreter(queue: multiprocessing.Queue) -> None:
    queue.put(interpreter())


def test_spawned_workers_inherit_it() -> None:
    set_interpreter("lean")
    context = multiprocessing.get_context("spawn")  # how execution/workers.py starts workers
    queue = context.Queue()
    process = context.Process(target=_child_interpreter, args=(queue,))
    process.start()
    assert queue.get(timeout=60) == "lean"
    process.join(timeout=60)


def test_cli_sets_it(tmp_path) -> None:  # noqa: ANN001
    from evmpipe.cli import main

    assert main(["blocktest", "--interpreter", "lean", str(tmp_path / "missing.json")]) != 0
    assert interpreter() == "lean"
    with pytest.raises(SystemExit):
        main(["head", "--interpreter", "lean", "--datadir", str(tmp_path)])  # head executes nothing
