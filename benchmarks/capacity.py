"""Capacity: what each stage of a shoal run costs on this machine, what a run of a given
shape will do here or on a bigger machine, and which stage stops it first.

    python benchmarks/capacity.py [--workloads dqn-cartpole dqn-pong ppo-pong] \
        [--machines here 16c-gpu 4x32c-gpu] [--actors N] [--envs-per-actor E] \
        [--replay-processes R] [--seconds 4] [--gpu-update-ms NAME=MS ...] \
        [--gpu-inference-ms NAME=MS ...] [--validate] [--validate-seconds 20] [--json]

Measured per workload (an algorithm on an env with the run's own resolved settings, one
actor's shape), each stage alone, on the real parts:

- env step and policy inference per agent step: the actors' own vector env and policy,
  one torch thread, process CPU time around each call (ALE steps its envs in threads);
- a whole actor per agent step (env, act, adder, encode, send): ``Actor.run`` in this
  process for --seconds, writing to a replay process whose table never holds it back
  (``sample_path.serve``), as wall time (its core to itself) and as this process's CPU
  (the gRPC threads included); adder + encode + send is what is left beside env and act;
- the replay process's CPU (``/proc``) per Insert message and per item: the actor's items
  (Pong: transitions recorded in the order an actor sends them) encoded beforehand by the
  client's writer in messages of two sizes, acknowledgements asked as the writer asks,
  streamed as fast as the server stores them, solved for both (a frames table's frames
  made new each round, as an actor's are); per sampled item (the learner's own
  prefetching sampler); per priority updated; on-policy per rollout and per env step;
- the learner's decode per batch (the prefetch thread's work on one message) and its
  update per batch (``learner.step`` on batches of the actor's items) on the device
  present: CUDA when there is one, else the CPU.

A GPU not present is an input: ``--gpu-update-ms dqn-pong=2.6`` (per update; on-policy per
update of the workload's default size, scaled per env step). The defaults and where each
came from are in ``GPU_UPDATE_MS`` and printed with every prediction. Actors infer on the
CPU in shoal (no central inference), so ``--gpu-inference-ms`` is reported, not used.

The model (``capacity_model.py``) turns the costs and a scenario (workload, actors, envs per
actor, cores per node, nodes, replay processes, GPU) into env steps/s, updates/s, the
samples per insert held and the first stage to saturate. Machines: ``here`` (this one's
cores, its GPU if any), ``16c-gpu`` (16 cores, 1 GPU), ``4x32c-gpu`` (4 nodes of 32 cores,
1 GPU); the actor count defaults to the cores less one each for the learner and the replay
service, and "knee" is the fewest actors that give 95 % of the most the model allows.

--validate: in the same invocation, ``actor_throughput.py``'s runs (``shoal train`` on a
local Ray) of DQN CartPole at 1 and 2 actors with the default learner-bound ratio and with
free actors (samples_per_insert 0.25), PPO CartPole synchronous at 1 and 2, and DQN Pong
at 1 and 2 (Atari settings of ``atari_pong.py``, a span 3x as long), each measured over
the second half of its span, right after its workload's costs are measured (the machine's
speed drifts within minutes); each is set against this machine's prediction for the same
shape.

With --json, one JSON object per line, one per scenario: kind ("prediction" or
"validation"), workload, machine, actors, envs_per_actor, cores_per_node, nodes,
replay_processes, gpu, predicted (env_steps_per_s, updates_per_s, samples_per_insert,
bottleneck, bounds: env steps/s each stage alone allows), knee (predictions only),
measured (validation: env_steps_per_s, updates_per_s, learner_wait_fraction,
actor_wait_fraction, learner_seconds_per_update: the run's learner time per update, its
waits for batches taken out), error (validation: predicted /
measured - 1, for env steps/s and updates/s), costs (seconds per unit) and sources (where a
cost came from). Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from atari_pong import ATARI_SETTINGS
from capacity_model import Costs, Machine, Prediction, Scenario, Workload, predict
from sample_path import (
    TOKEN,
    Recorded,
    cpu_seconds,
    decode_ms,
    into_prefetch,
    record,
    serve,
    stamped,
)

from shoal.protos.tables import MinSize

HERE = Path(__file__).resolve().parent
LEARNER_THREADS = 1
"""torch's intra-op threads in the learner's stages: Ray sets OMP_NUM_THREADS to an actor's
num_cpus, 1 for shoal's learner, so torch runs one thread there (``--local`` leaves torch's
default)."""


@dataclass(frozen=True)
class WorkloadDef:
    """What to measure: an algorithm on an env with settings over shoal's defaults."""

    algo: str
    env: str
    envs_per_actor: int
    settings: dict[str, Any]
    measure_as: str = ""  # another workload's costs (only the ratio differs)


WORKLOADS = {
    "dqn-cartpole": WorkloadDef("dqn", "CartPole-v1", 8, {}),
    "dqn-cartpole-free": WorkloadDef("dqn", "CartPole-v1", 8, {"samples_per_insert": 0.25},
                                     measure_as="dqn-cartpole"),
    "ppo-cartpole": WorkloadDef("ppo", "CartPole-v1", 8, {}),
    "dqn-pong": WorkloadDef("dqn", "ALE/Pong-v5", 4, ATARI_SETTINGS["dqn"]),
    "ppo-pong": WorkloadDef("ppo", "ALE/Pong-v5", 4, ATARI_SETTINGS["ppo"]),
}

GPU_UPDATE_MS: dict[str, tuple[float, str]] = {
    # ms per update on one GPU, for the machines with a GPU when none is present here
    "dqn-cartpole": (1.5, "assumed: a 2-layer MLP update is kernel-launch bound, ~40 launches"
                          " of ~35 us; no GPU measured"),
    "dqn-cartpole-free": (1.5, "as dqn-cartpole"),
    "ppo-cartpole": (40.0, "assumed: 40 Adam steps of a 2-layer MLP (20 epochs x 2 minibatches)"
                           " at ~1 ms each, launch bound; no GPU measured"),
    "dqn-pong": (2.6, "derived: 'Human-Level Control without Server-Grade Hardware' (arXiv "
                      "2111.01264) ran 200M frames of Nature DQN (1 update of 32 per 4 agent "
                      "steps) in 9 h on one GTX 1080: 386 updates/s, <= 2.6 ms each"),
    "ppo-pong": (64.0, "assumed: CleanRL's update of 8 envs x 128 steps, 4 epochs x 4 "
                       "minibatches of 256, ~4 ms per Nature-CNN minibatch step; no GPU "
                       "measured"),
}
GPU_UPDATE_SIZE = {"ppo-cartpole": 256, "ppo-pong": 1024}  # env steps the on-policy ms is for

MACHINES = {
    "16c-gpu": Machine("16 cores + 1 GPU", 16, 1, True),
    "4x32c-gpu": Machine("4 nodes x 32 cores + 1 GPU", 32, 4, True),
}


def this_machine() -> Machine:
    gpu = torch.cuda.is_available()
    return Machine(f"this machine ({os.cpu_count()} cores{', 1 GPU' if gpu else ''})",
                   float(os.cpu_count() or 1), 1, gpu)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["dqn-cartpole", "dqn-pong",
                                                           "ppo-pong"], choices=WORKLOADS)
    parser.add_argument("--machines", nargs="+", default=["here", "16c-gpu", "4x32c-gpu"],
                        choices=["here", *MACHINES])
    parser.add_argument("--actors", type=int, help="default: the cores less 2, per machine")
    parser.add_argument("--envs-per-actor", type=int, help="default: the workload's")
    parser.add_argument("--replay-processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed stage")
    parser.add_argument("--gpu-update-ms", nargs="*", default=[], metavar="NAME=MS")
    parser.add_argument("--gpu-inference-ms", nargs="*", default=[], metavar="NAME=MS")
    parser.add_argument("--validate", action="store_true",
                        help="also run actor_throughput.py and set it against the model")
    parser.add_argument("--validate-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args(argv)
    try:
        args.gpu_update_ms = named_figures(args.gpu_update_ms)
        args.gpu_inference_ms = named_figures(args.gpu_inference_ms)
    except ValueError as error:
        parser.error(str(error))
    return args


def named_figures(pairs: list[str]) -> dict[str, float]:
    figures = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in WORKLOADS:
            raise ValueError(f"{pair}: expected NAME=MS with NAME one of {', '.join(WORKLOADS)}")
        try:
            figures[name] = float(value)
        except ValueError:
            raise ValueError(f"{pair}: expected NAME=MS, MS a number") from None
    return figures


# --------------------------------------------------------------------- measuring


def resolved(definition: WorkloadDef) -> Any:
    """The run's settings for one actor: an on-policy update's size is then measured as a
    1-actor run makes it (a preset's 2 actors would halve its rollouts)."""
    from shoal.launcher.config import resolve

    return resolve({"algo": definition.algo, "env": definition.env,
                    "algorithm": definition.settings, "run": {"actors": 1},
                    "collection": {"envs_per_actor": definition.envs_per_actor}},
                   check_learner=False)


def env_and_inference(config: Any, seconds: float) -> tuple[float, float]:
    """CPU seconds per agent step of envs.step and of policy.act, each alone: the
    process's, since ALE's vector env steps its envs in threads of its own."""
    from shoal.actors.envs import make_vector_env

    torch.set_num_threads(1)  # as each actor
    envs = make_vector_env(config.env, config.collection.envs_per_actor, seed=0)
    policy = config.definition.make_policy(config.algorithm, config.env_spec, 0, 1, 0)
    obs, _ = envs.reset(seed=0)
    env_seconds = act_seconds = 0.0
    steps = 0
    try:
        for _ in range(20):  # warm-up
            obs, *_ = envs.step(policy.act(obs).actions)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t0 = time.process_time()
            actions = policy.act(obs).actions
            t1 = time.process_time()
            obs, *_ = envs.step(actions)
            t2 = time.process_time()
            act_seconds += t1 - t0
            env_seconds += t2 - t1
            steps += envs.num_envs
    finally:
        envs.close()
    return env_seconds / steps, act_seconds / steps


def whole_actor(config: Any, address: str, pid: int, seconds: float) -> dict[str, float]:
    """One Actor.run for ``seconds`` after a second of warm-up: wall and CPU seconds per
    agent step, and the replay process's CPU per agent step meanwhile."""
    from shoal.actors.actor import Actor
    from shoal.replay_service.client import ReplayClient

    with ReplayClient(address, TOKEN) as client:
        actor = Actor(config.definition, config.algorithm, config.env, config.env_spec,
                      config.collection, actor_index=0, num_actors=1, seed=config.seed,
                      replay=client, table=config.table.name, weights=None)
        stop = threading.Event()
        marks: dict[str, tuple[float, float, float, int]] = {}

        def mark(name: str) -> None:
            marks[name] = (time.perf_counter(), time.process_time(), cpu_seconds(pid),
                           actor.stats.env_steps)

        def watch() -> None:
            time.sleep(1.0)
            mark("start")
            time.sleep(seconds)
            mark("end")
            stop.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        actor.run(stop)
        watcher.join()
    (w0, c0, r0, s0), (w1, c1, r1, s1) = marks["start"], marks["end"]
    steps = s1 - s0
    return {"actor_step": (w1 - w0) / steps, "actor_cpu": (c1 - c0) / steps,
            "replay_per_env_step": (r1 - r0) / steps}


def take(client: Any, table: str, batch_size: int, count: int) -> list[Any]:
    """``count`` decoded batches of the table's items, owning their arrays."""
    with client.sample(table, batch_size, num_batches=count) as sampler:
        return [batch._replace(columns={name: np.array(column)
                                        for name, column in batch.columns.items()})
                for batch in sampler]


ACK_EVERY = 4  # messages per acknowledgement the client's writer asks for by default
ROUNDS = itertools.count(1)  # the stamp of each round of items sent again


def insert_messages(client: Any, table: str, columns: dict[str, np.ndarray],
                    per_message: int, frames: list[str],
                    distinct_items: int) -> tuple[list[Any], int]:
    """Insert messages of ``per_message`` of these items, encoded beforehand by the
    client's own writer, and how many items they hold. A frames table needs new frames
    (it stores a frame it has once), so those are stamped anew until ``distinct_items``."""
    count = len(next(iter(columns.values())))
    writer = client.writer(table, max_items_per_message=per_message)
    messages: list[Any] = []
    items = 0
    with contextlib.closing(writer):  # it sends nothing: close has nothing to wait for
        while not messages or (frames and items < distinct_items):
            columns = stamped(columns, frames, next(ROUNDS))
            for start in range(0, count - per_message + 1, per_message):
                part = {name: column[start:start + per_message]
                        for name, column in columns.items()}
                message = writer.encode(part, np.ones(per_message))
                # as the writer asks, every half of its default window of eight messages
                message.ack_later = len(messages) % ACK_EVERY != ACK_EVERY - 1
                messages.append(message)
                items += per_message
    return messages, items


def insert_cost(client: Any, messages: list[Any], items: int, pid: int, seconds: float,
                again: bool) -> float:
    """Replay CPU-seconds per item of streaming ``messages`` as fast as the server stores
    them (``again``: over and over for ``seconds``; else once, their frames being new)."""
    cpu, started, sent = cpu_seconds(pid), time.perf_counter(), 0
    while not sent or (again and time.perf_counter() - started < seconds):
        for _ in client._stub.Insert(iter(messages), metadata=client._metadata):
            pass  # an acknowledgement per message
        sent += items
    return (cpu_seconds(pid) - cpu) / sent


def insert_costs(client: Any, table: str, columns: dict[str, np.ndarray], per_message: int,
                 pid: int, seconds: float, frames: list[str]) -> tuple[float, float]:
    """(per message, per item): the CPU per item at two message sizes is a + b / size,
    solved for a and b."""
    small = max(1, per_message // 16)
    per_item = {}
    for size in (per_message, small):
        messages, items = insert_messages(client, table, columns, size, frames, 20_000)
        per_item[size] = insert_cost(client, messages, items, pid, seconds, again=not frames)
    message_cost = max(0.0, (per_item[small] - per_item[per_message])
                       / (1 / small - 1 / per_message))
    return message_cost, max(0.0, per_item[per_message] - message_cost / per_message)


def priority_cost(client: Any, table: str, keys: np.ndarray, pid: int,
                  seconds: float) -> float:
    """Replay CPU-seconds per priority updated, batches of the learner's size."""
    rng = np.random.default_rng(0)
    cpu, updated, started = cpu_seconds(pid), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        client.update_priorities(table, keys, rng.uniform(0.1, 2.0, len(keys)))
        updated += len(keys)
    return (cpu_seconds(pid) - cpu) / updated


def update_seconds(config: Any, batches: list[Any], device: Any,
                   warm_up: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of learner.step alone on these batches, after
    ``warm_up`` of them; CPU is the process's (torch's intra-op threads)."""
    from shoal.learner.prefetch import to_device

    torch.set_num_threads(LEARNER_THREADS)
    learner = config.definition.make_learner(config.algorithm, config.env_spec, device)
    walls, cpus = [], []
    for index, batch in enumerate(batches):
        on_device = to_device(batch, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        learner.step(on_device.columns, on_device.probabilities)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warm_up:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def learner_loop(config: Any, address: str, device: Any, seconds: float,
                 updates: int) -> tuple[float, float]:
    """(wall, CPU) seconds per update of the learner's own loop (``LearnerLoop.run``: its
    prefetch thread decoding, priorities sent by their thread, weights published to a
    real ParameterServer) on a table that never makes it wait, from its 3rd update for
    ``seconds`` or ``updates`` updates, whichever ends first. No evaluations."""
    from shoal.learner.learner import LearnerLoop
    from shoal.learner.parameter_service import ParameterServer
    from shoal.replay_service.client import ReplayClient

    torch.set_num_threads(LEARNER_THREADS)
    learner = config.definition.make_learner(config.algorithm, config.env_spec, device)
    with ReplayClient(address, TOKEN) as client, ParameterServer(token=TOKEN) as parameters:
        loop = LearnerLoop(learner, replay=client, table=config.table.name,
                           batch_size=config.definition.batch_size(config.algorithm, 1),
                           parameters=parameters, device=device,
                           publish_every=config.definition.publish_every)
        stop = threading.Event()
        marks: list[tuple[float, float, int]] = []

        def watch() -> None:
            deadline = time.monotonic() + 600.0  # a bound on a hung loop, not a speed
            while loop.stats.updates < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            marks.append((time.perf_counter(), time.process_time(), loop.stats.updates))
            end = time.perf_counter() + seconds
            while (time.perf_counter() < end and loop.stats.updates < 2 + updates
                   and time.monotonic() < deadline):
                time.sleep(0.001)
            marks.append((time.perf_counter(), time.process_time(), loop.stats.updates))
            stop.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        loop.run(stop)
        watcher.join()
    (w0, c0, u0), (w1, c1, u1) = marks
    return (w1 - w0) / (u1 - u0), (c1 - c0) / (u1 - u0)


def publish_seconds(config: Any, device: Any) -> float:
    """The learner's weights out and one actor's policy loading them: per version."""
    learner = config.definition.make_learner(config.algorithm, config.env_spec, device)
    policy = config.definition.make_policy(config.algorithm, config.env_spec, 0, 1, 0)
    times = []
    for version in range(1, 12):
        started = time.perf_counter()
        policy.load(learner.weights(), version)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def raw_rollouts(client: Any, table: str, count: int) -> list[Any]:
    from shoal.protos import replay_pb2

    request = replay_pb2.SampleRequest(table=table, batch_size=1, prefetch=1,
                                       num_batches=count)
    return list(client._stub.Sample(request, metadata=client._metadata))


def refill(client: Any, table: str, rollouts: list[Any], count: int) -> None:
    """``count`` of these rollouts into the queue, for the learner's loop to drain."""
    with client.writer(table, max_items_per_message=1) as writer:
        for index in range(count):
            writer.extend(rollouts[index % len(rollouts)].columns)


def rollout_costs(client: Any, config: Any, pid: int, seconds: float) -> dict[str, Any]:
    """On-policy: the replay process's CPU per rollout inserted and per env step sampled,
    and the learner's decode of a rollout per env step (the queue refilled with the
    actor's rollouts and drained again, for ``seconds``)."""
    from shoal.learner.prefetch import decoding
    from shoal.replay_service.sampling import Sampler

    table = config.table.name
    steps = config.algorithm.rollout_length * config.collection.envs_per_actor
    messages = raw_rollouts(client, table, min(8, client.info([table])[table].size))
    decoded, times = [], []
    with Sampler(Recorded(messages), **decoding(0)) as sampler:
        for _ in messages:
            started = time.perf_counter()
            decoded.append(next(sampler))
            times.append(time.perf_counter() - started)
    inserting = sampling = 0.0
    inserted = sampled = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        writer = client.writer(table, max_items_per_message=1)  # asks Info: not counted
        cpu = cpu_seconds(pid)
        with writer:  # leaving waits until all are stored, so the drain below finds them
            for batch in decoded:
                writer.extend(batch.columns)
        inserting += cpu_seconds(pid) - cpu
        inserted += len(decoded)
        cpu = cpu_seconds(pid)
        sampled += len(raw_rollouts(client, table, len(decoded)))
        sampling += cpu_seconds(pid) - cpu
    return {"replay_insert_message": inserting / inserted,
            "replay_sample_item": sampling / (sampled * steps),
            "decode": statistics.median(times) / steps, "batches": decoded, "steps": steps}


def measure(definition: WorkloadDef, seconds: float) -> Costs:
    config = resolved(definition)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env_step, inference = env_and_inference(config, seconds)
    # a queue would hold the actor once full: the oldest go instead (FIFO, as a queue)
    spec = dataclasses.replace(config.table, rate_limiter=MinSize(1))
    on_policy = config.table.is_queue
    from shoal.replay_service.client import ReplayClient

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    stop = context.Event()
    server = context.Process(target=serve, args=(spec, theirs, stop), daemon=True)
    server.start()
    try:
        address = ours.recv()
        pid = server.pid
        assert pid is not None
        actor = whole_actor(config, address, pid, seconds)
        with ReplayClient(address, TOKEN) as client:
            common = {"env_step": env_step, "inference": inference,
                      "actor_step": actor["actor_step"], "actor_cpu": actor["actor_cpu"],
                      "replay_seen": actor["replay_per_env_step"]}
            if on_policy:
                rollouts = rollout_costs(client, config, pid, seconds)
                steps, batches = rollouts["steps"], rollouts["batches"]
                wall, cpu = update_seconds(config, batches[:8], device, warm_up=2)
                updates = max(3, min(40, int(seconds / wall)))
                refill(client, config.table.name, batches, updates + 4)
                loop_wall, loop_cpu = learner_loop(config, address, device, seconds, updates)
                return Costs(**common, replay_insert_message=rollouts["replay_insert_message"],
                             replay_insert_item=0.0,
                             replay_sample_item=rollouts["replay_sample_item"],
                             replay_priority=0.0, decode=rollouts["decode"],
                             update=wall / steps, update_cpu=cpu / steps,
                             learner_overhead=max(0.0, loop_wall - wall) / steps,
                             learner_cpu_overhead=max(0.0, loop_cpu - cpu) / steps,
                             publish=publish_seconds(config, device))
            batch_size = config.algorithm.batch_size
            per_message = config.algorithm.items_per_message
            image = len(config.env_spec.observation_shape) > 1
            held = take(client, spec.name, batch_size, max(12, (512 if image else 4096)
                                                          // batch_size))
            frames = [name for name, field in spec.signature.items() if field.frames]
            # frames in the order an actor sends them (a transition brings ~1 new frame
            # per env; random draws from the table would bring ~7)
            columns = (record(config.env, config, 2048) if frames else
                       {name: np.concatenate([batch.columns[name] for batch in held])
                        for name in held[0].columns})
            message_cost, item_cost = insert_costs(client, spec.name, columns, per_message,
                                                   pid, seconds, frames)
            _, sample_cost = into_prefetch(client, spec.name, batch_size, seconds, pid)
            wall, cpu = update_seconds(config, held[:12], device, warm_up=2)
            loop_wall, loop_cpu = learner_loop(config, address, device, seconds, 10_000)
            return Costs(**common, replay_insert_message=message_cost,
                         replay_insert_item=item_cost, replay_sample_item=sample_cost,
                         replay_priority=priority_cost(client, spec.name, held[0].keys, pid,
                                                       seconds),
                         decode=decode_ms(client, spec.name, batch_size) / 1000,
                         update=wall, update_cpu=cpu,
                         learner_overhead=max(0.0, loop_wall - wall),
                         learner_cpu_overhead=max(0.0, loop_cpu - cpu))
    finally:
        stop.set()
        server.join(timeout=30)


# -------------------------------------------------------------------- predicting


def workload_of(name: str, config: Any) -> Workload:
    algorithm = config.algorithm
    if config.table.is_queue:
        settings = WORKLOADS[name].settings
        return Workload(name, True, batch_size=1,
                        env_steps_per_update=algorithm.env_steps_per_update,
                        rollout_length=settings.get("rollout_length"))
    return Workload(name, False, batch_size=algorithm.batch_size,
                    samples_per_insert=algorithm.samples_per_insert,
                    items_per_message=algorithm.items_per_message)


def on_gpu(name: str, on_policy: bool, costs: Costs, args: argparse.Namespace) -> Costs:
    """The costs on a machine with a GPU, where this one has none: the update given."""
    given = name in args.gpu_update_ms
    ms = args.gpu_update_ms[name] if given else GPU_UPDATE_MS[name][0]
    source = "--gpu-update-ms" if given else GPU_UPDATE_MS[name][1]
    update = ms / 1000 / GPU_UPDATE_SIZE.get(name, 1)
    sources = {**costs.sources, "update": f"{ms:g} ms per update: {source}"}
    if name in args.gpu_inference_ms:
        sources["inference"] = (f"--gpu-inference-ms {args.gpu_inference_ms[name]:g} given, "
                                "not used: shoal's actors infer on the CPU")
    if on_policy:  # the loop beside the update measured here is mostly torch's (minibatch
        # shuffles, returns) and noisy (26-365 ms per Pong update in runs an hour apart);
        # on a GPU it goes with the update, decoding stays
        sources["learner_overhead"] = "the decode alone: the rest of the loop on the GPU"
        costs = dataclasses.replace(costs, learner_overhead=costs.decode,
                                    learner_cpu_overhead=costs.decode)
    return dataclasses.replace(costs, update=update, update_cpu=update, sources=sources)


def knee(workload: Workload, machine: Machine, envs: int, replay: int,
         costs: Costs) -> int:
    """The fewest actors whose prediction is within 5 % of the most any count gives."""
    most = int(machine.cores_per_node * machine.nodes) * 2
    rates = [predict(Scenario(workload, machine, actors, envs, replay), costs).env_steps_per_s
             for actors in range(1, most + 1)]
    best = max(rates)
    return next(index + 1 for index, rate in enumerate(rates) if rate >= 0.95 * best)


def row(kind: str, scene: Scenario, prediction: Prediction, costs: Costs,
        **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "workload": scene.workload.name, "machine": scene.machine.name,
            "actors": scene.actors, "envs_per_actor": scene.envs_per_actor,
            "cores_per_node": scene.machine.cores_per_node, "nodes": scene.machine.nodes,
            "replay_processes": scene.replay_processes, "gpu": scene.machine.gpu,
            "predicted": prediction.to_dict(), **extra,
            "costs": {key: value for key, value in dataclasses.asdict(costs).items()
                      if key != "sources"},
            "sources": costs.sources}


# -------------------------------------------------------------------- validating

VALIDATIONS = [  # workload, actor_throughput.py arguments, actor counts, span x --validate-seconds
    ("dqn-cartpole", ["--algo", "dqn"], [1, 2], 1),
    ("dqn-cartpole-free", ["--algo", "dqn"], [1, 2], 1),
    ("ppo-cartpole", ["--algo", "ppo"], [1, 2], 1),
    # Pong fills 5,000 transitions before sampling and then runs ahead by the limiter's
    # tolerance (2,048 inserts): ~20 s at 2 actors, so a span long enough to leave them
    ("dqn-pong", ["--algo", "dqn", "--env", "ALE/Pong-v5"], [1, 2], 3),
]


def measured_runs(name: str, arguments: list[str], actors: list[int], seconds: float,
                  folder: Path) -> list[dict[str, Any]]:
    """actor_throughput.py's runs (``shoal train`` on a local Ray, interrupted) for this
    workload's settings; rates over the second half of each run's throughput lines, past
    the table's warm-up and the rate limiter's tolerance, as the model's steady state."""
    import actor_throughput
    import yaml

    definition = WORKLOADS[name]
    config_file = folder / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(definition.settings))
    args = actor_throughput.parse_args([*arguments, "--envs-per-actor",
                                        str(definition.envs_per_actor), "--seconds",
                                        str(seconds), "--config", str(config_file)])
    rows = []
    for count in actors:
        lines = actor_throughput.watch_run(args, count, None, folder / f"{name}-{count}")
        rows.append(actor_throughput.steady_state(lines[len(lines) // 2:], count, None))
    return rows


def error(predicted: float, measured: float | None) -> float | None:
    return None if not measured else round(predicted / measured - 1.0, 3)


# ----------------------------------------------------------------------- output


def print_costs(name: str, costs: Costs) -> None:
    us = {key: 1e6 * value for key, value in dataclasses.asdict(costs).items()
          if isinstance(value, float)}
    print(f"\n{name}: cost per unit, microseconds")
    print(f"  env step {us['env_step']:.1f}/agent step, inference {us['inference']:.1f}/obs, "
          f"the rest (adder, priorities, encode, send) {1e6 * costs.actor_rest:.1f}, whole actor "
          f"{us['actor_step']:.1f} wall, {us['actor_cpu']:.1f} CPU")
    print(f"  replay: insert {us['replay_insert_message']:.1f}/message + "
          f"{us['replay_insert_item']:.2f}/item, sample {us['replay_sample_item']:.2f}/item, "
          f"priority {us['replay_priority']:.2f}/update; while the actor wrote "
          f"{us['replay_seen']:.2f}/env step")
    print(f"  learner: update {us['update']:.1f} wall, {us['update_cpu']:.1f} CPU; its loop "
          f"beside the update {us['learner_overhead']:.1f} wall, "
          f"{us['learner_cpu_overhead']:.1f} CPU (decode alone {us['decode']:.1f}); "
          f"publish {us['publish']:.1f}")
    for key, source in costs.sources.items():
        print(f"  {key}: {source}")


def print_row(line: dict[str, Any]) -> None:
    p = line["predicted"]
    measured = line.get("measured")
    tail = ""
    if measured:
        tail = (f" | measured {measured['env_steps_per_s']:>9,.0f} "
                f"{measured['updates_per_s']:>7.1f}"
                f" | error {fmt_error(line['error']['env_steps_per_s'])} "
                f"{fmt_error(line['error']['updates_per_s'])}")
    elif "knee" in line:
        tail = f" | knee {line['knee']} actors"
    shape = f"{line['actors']}x{line['envs_per_actor']}"
    print(f"{line['workload']:<18} {line['machine']:<28} {shape:>6}"
          f" | {p['env_steps_per_s']:>11,.0f} env steps/s {p['updates_per_s']:>8.1f} upd/s "
          f"{p['bottleneck']:<8}{tail}")


def fmt_error(value: float | None) -> str:
    return "   -" if value is None else f"{value:+.0%}"


def validation_rows(name: str, workload: Workload, costs: Costs, here: Machine,
                    runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        scene = Scenario(workload, here, run["actors"], WORKLOADS[name].envs_per_actor, 1)
        prediction = predict(scene, costs)
        measured = {key: run[key] for key in ("env_steps_per_s", "updates_per_s",
                                              "learner_wait_fraction", "actor_wait_fraction")}
        wait = run["learner_wait_fraction"]
        if wait is not None and run["updates_per_s"]:
            # the learner's time per update in the run, its waits taken out
            measured["learner_seconds_per_update"] = (1.0 - min(wait, 1.0)) / run["updates_per_s"]
        rows.append(row("validation", scene, prediction, costs, measured=measured, error={
            "env_steps_per_s": error(prediction.env_steps_per_s, run["env_steps_per_s"]),
            "updates_per_s": error(prediction.updates_per_s, run["updates_per_s"])}))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    validations = {entry[0]: entry[1:] for entry in VALIDATIONS} if args.validate else {}
    names = list(dict.fromkeys([*args.workloads, *validations]))
    sources = [WORKLOADS[name].measure_as or name for name in names]
    # a workload's runs follow its measurement: the machine's speed drifts within minutes
    names.sort(key=lambda name: sources.index(WORKLOADS[name].measure_as or name))
    configs = {name: resolved(WORKLOADS[name]) for name in names}
    here = this_machine()
    costs: dict[str, Costs] = {}
    checked: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-capacity-") as folder:
        for name in names:
            source = WORKLOADS[name].measure_as or name
            if source not in costs:
                costs[source] = measure(WORKLOADS[source], args.seconds)
                print_costs(source, costs[source])
            costs[name] = costs[source]
            if name in validations:
                arguments, counts, span = validations[name]
                runs = measured_runs(name, arguments, counts, span * args.validate_seconds,
                                     Path(folder))
                checked += validation_rows(name, workload_of(name, configs[name]),
                                           costs[name], here, runs)
    lines = []
    for name in args.workloads:
        workload = workload_of(name, configs[name])
        envs = args.envs_per_actor or WORKLOADS[name].envs_per_actor
        for key in args.machines:
            machine = here if key == "here" else MACHINES[key]
            cost = (costs[name] if not machine.gpu or here.gpu
                    else on_gpu(name, workload.on_policy, costs[name], args))
            actors = args.actors or max(1, int(machine.cores_per_node * machine.nodes) - 2)
            scene = Scenario(workload, machine, actors, envs, args.replay_processes)
            lines.append(row("prediction", scene, predict(scene, cost), cost,
                             knee=knee(workload, machine, envs, args.replay_processes, cost)))
    lines += checked
    print(f"\n{'workload':<18} {'machine':<28} {'actors':>6} | predicted")
    for line in lines:
        print_row(line)
    if args.json:
        for line in lines:
            print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
