"""The blocks of a file through evmpipe's pipeline: what overlaps with what.

`evmpipe bench` replays a file with blocks in flight at once (`pipeline.runner`:
prefetch works ahead, merkleize and commit follow execution): while the workers
speculate block N, the main process decodes N+1 and merkleizes and commits N-1.
One block at a time, as `evmpipe.analyze.schedule` plays it, misses that overlap.

Each block is a `BlockPlan`: CPU work of the main process in three stages (`pre`:
prefetch; `setup` before the chunks are sent, `head` while they run, then the
validation of each transaction as its chunk comes back: execute; `post`: validate,
merkleize, commit) and work of the workers (a senders
job in prefetch, the chunks of execution). The stages keep their order per block,
and each stage takes one block at a time, in block order; prefetch runs at most
`lookahead` blocks ahead of execution.

The main process is one interpreter (one GIL): its runnable stages share one core
(processor sharing). The main process and the workers are processes sharing
`cores` cores with `load` busy processes of others: while more are runnable than
there are cores, each runs at cores / runnable of full speed. A message costs
latency, no CPU.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: prefetch's lookahead in `pipeline.runner.PipelineConfig` (the bench's default).
LOOKAHEAD = 4
_EPS = 1e-12


@dataclass
class BlockPlan:
    """One block's work, in seconds of CPU (messages: latency)."""

    pre: float = 0.0  # the main process: prefetch (decoding, checks, reading state ahead, sender recovery when it recovers them)
    senders: float = 0.0  # each worker, in prefetch: its share of sender recovery (0: none asked)
    setup: float = 0.0  # the main process, at the start of execute, before any chunk is sent (building the request, predicting)
    head: float = 0.0  # the main process, while the chunks run (system work; the whole block when sequential)
    parts: list[tuple[int, float, list[int]]] = field(default_factory=list)  # (worker, CPU, transactions) of each chunk
    validate: list[float] = field(default_factory=list)  # the main process, per transaction once its chunk is back
    post: float = 0.0  # the main process: validate, merkleize, commit
    message: float = 0.0  # one request's round trip (latency)
    reply_per_tx: float = 0.0  # latency per transaction of a chunk before its reply is taken (the worker waits)


@dataclass
class _Task:
    kind: str  # pre, exec, post
    block: int
    left: float = 0.0  # CPU of the work available now
    phase: str = "cpu"  # pre: cpu, senders; exec: head, validate


def run(plans: list[BlockPlan], workers: int, cores: float, load: float = 0.0, lookahead: int = LOOKAHEAD, trace: list[tuple[str, int, float, float]] | None = None,
        at_prefetch: Callable[[int, int], BlockPlan] | None = None, worker_start: float = 0.0) -> float:
    """Seconds until the last block's `post` is done. `trace`: gets (stage, block,
    start, end) of each stage of each block. `at_prefetch(block, executed)`: the
    block's plan, decided when its prefetch starts with `executed` blocks through
    execution (`auto` decides there whether the workers recover the senders ahead,
    from the reports of the blocks run so far: with prefetch ahead, not all of the
    blocks before this one). `worker_start`: CPU each worker spends once, on its
    first chunk of the run (it opens the database: `_Worker._sync`)."""
    plans = list(plans)
    n = len(plans)
    if not n:
        return 0.0
    queues: list[list[list]] = [[] for _ in range(max(1, workers))]  # per worker: [kind, left, on_done]
    pre_done = exec_done = post_done = 0  # blocks through each stage, in order
    senders_left = [0] * n
    delivered: list[list[bool]] = [[] for _ in range(n)]
    part_of: list[dict[int, int]] = [{} for _ in range(n)]
    next_tx = [0] * n
    tasks: dict[str, _Task | None] = {"pre": None, "exec": None, "post": None}
    now = 0.0
    started: dict[tuple[str, int], float] = {}

    def log(kind: str, block: int) -> None:
        if trace is not None:
            trace.append((kind, block, started.pop((kind, block), now), now))

    # a worker takes one request at a time, in the order they wait for it (the
    # pool's lock per worker is fair): a block's next chunk is sent once the reply
    # to its last one is taken, so prefetch's sender recovery for a later block,
    # asked meanwhile, goes before it
    pending: dict[tuple[int, int], list[int]] = {}
    opened: set[int] = set()  # workers that have had a chunk

    def send_next(block: int, worker: int) -> None:
        numbers = pending[(block, worker)]
        if numbers:
            number = numbers.pop(0)
            _, cpu, members = plans[block].parts[number]
            queues[worker].append(["delay", plans[block].message, None])
            if worker not in opened:
                opened.add(worker)
                cpu += worker_start
            queues[worker].append(["cpu", cpu, None])
            queues[worker].append(["delay", plans[block].reply_per_tx * len(members), (deliver, block, number, worker)])

    def deliver(block: int, number: int, worker: int) -> None:
        delivered[block][number] = True
        send_next(block, worker)

    def senders_back(block: int) -> None:
        senders_left[block] -= 1

    def start_tasks() -> bool:
        nonlocal pre_done, exec_done, post_done
        changed, any_change = True, False
        while changed:
            changed = False
            pre = tasks["pre"]
            if pre is None and pre_done < n and pre_done < exec_done + lookahead:
                if at_prefetch is not None:
                    plans[pre_done] = at_prefetch(pre_done, exec_done)
                tasks["pre"] = _Task("pre", pre_done, plans[pre_done].pre)
                started[("pre", pre_done)] = now
                changed = True
            elif pre is not None and pre.phase == "senders" and senders_left[pre.block] == 0:
                log("pre", pre.block)
                tasks["pre"], pre_done, changed = None, pre_done + 1, True
            ex = tasks["exec"]
            if ex is None and exec_done < pre_done:
                k = exec_done
                delivered[k] = [False] * len(plans[k].parts)
                tasks["exec"] = _Task("exec", k, plans[k].setup, "setup")
                started[("exec", k)] = now
                changed = True
            elif ex is not None and ex.left <= _EPS and ex.phase == "validate":
                plan = plans[ex.block]
                work = 0.0
                while next_tx[ex.block] < len(plan.validate) and delivered[ex.block][part_of[ex.block][next_tx[ex.block]]]:
                    work += plan.validate[next_tx[ex.block]]
                    next_tx[ex.block] += 1
                if work > 0.0:
                    ex.left, changed = work, True
                elif next_tx[ex.block] == len(plan.validate) and all(delivered[ex.block]):
                    log("exec", ex.block)
                    tasks["exec"], exec_done, changed = None, exec_done + 1, True
            post = tasks["post"]
            if post is None and post_done < exec_done:
                tasks["post"] = _Task("post", post_done, plans[post_done].post)
                started[("post", post_done)] = now
                changed = True
            any_change = any_change or changed
        return any_change

    def finish_task(task: _Task) -> None:
        nonlocal post_done
        plan = plans[task.block]
        if task.kind == "pre" and task.phase == "cpu":
            if plan.senders > 0.0:
                task.phase = "senders"
                senders_left[task.block] = len(queues)
                for queue in queues:
                    queue.append(["delay", plan.message, None])
                    queue.append(["cpu", plan.senders, (senders_back, task.block)])
            else:
                task.phase = "senders"  # nothing asked: done at once
        elif task.kind == "exec" and task.phase == "setup":
            mine: dict[int, list[int]] = {}
            for number, (worker, _, members) in enumerate(plan.parts):
                for i in members:
                    part_of[task.block][i] = number
                mine.setdefault(worker, []).append(number)
            for worker, numbers in mine.items():
                pending[(task.block, worker)] = numbers
                send_next(task.block, worker)
            task.phase, task.left = "head", plan.head
        elif task.kind == "exec" and task.phase == "head":
            task.phase = "validate"
        elif task.kind == "post":
            log("post", task.block)
            tasks["post"] = None
            post_done += 1

    def settle() -> None:
        """Finish every task whose CPU is done, start what can start, until nothing changes."""
        while True:
            progressed = False
            for task in list(tasks.values()):
                if task is not None and task.left <= _EPS and (task.phase in ("setup", "head") or task.kind == "post" or (task.kind == "pre" and task.phase == "cpu")):
                    task.left = 0.0
                    finish_task(task)
                    progressed = True
            if not (start_tasks() or progressed):
                return

    settle()
    while post_done < n:
        main = [t for t in tasks.values() if t is not None and t.left > _EPS]
        busy = [q for q in queues if q and q[0][0] == "cpu"]
        running = len(busy) + (1 if main else 0)
        rate = min(1.0, cores / (running + load)) if running else 1.0
        share = rate / len(main) if main else 0.0
        step = min([t.left / share for t in main] + [q[0][1] / (rate if q[0][0] == "cpu" else 1.0) for q in queues if q], default=float("inf"))
        if step == float("inf"):
            raise RuntimeError("pipeline simulation stalled")
        now += step
        for task in main:
            task.left -= step * share
        for queue in queues:
            if not queue:
                continue
            item = queue[0]
            item[1] -= step * (rate if item[0] == "cpu" else 1.0)
            if item[1] <= _EPS:
                queue.pop(0)
                if item[2] is not None:
                    callback, *args = item[2]
                    callback(*args)
        settle()
    return now
