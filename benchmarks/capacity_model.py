"""The capacity model: what a shoal run will do on a machine, from what each stage costs per
unit of work (``Costs``, measured by ``capacity.py``) and the run's shape (``Scenario``).

Off-policy (DQN, SAC): the replay service's rate limiter holds ``samples_per_insert``, so
updates/s and env steps/s move together (updates = env steps x samples_per_insert /
batch). Every stage then allows at most some env steps/s, and the run gets the least of
them; that stage is the first to saturate:

    actors    A actors, each one thread: A / (seconds of actor per agent step)
    learner   its loop, one interpreter lock over the update, the prefetch thread's
              decoding and the priorities' thread: batch / (samples_per_insert x (update +
              the loop's overhead))
    replay    R replay processes, one interpreter each: R / (replay CPU per env step:
              inserts, per message and per item, sampled items, priority updates)
    cores     the node with the learner and the replay service (it holds 1/N of the
              actors): its cores / (CPU per env step of all it runs)

On-policy, synchronous (PPO, A2C): actors collect the update's env steps in parallel, then
the learner trains while they wait; one update takes collect + transit + train, and the
stage with the larger share of that time is the bottleneck. Actors that need more cores
than their node has stretch the collection by the ratio.

Nothing here measures: it is arithmetic on its inputs, so it is tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Costs:
    """Seconds per unit of each stage (CPU-seconds where a stage shares no core with
    another), for one workload on one machine."""

    env_step: float               # one env's step, per agent step
    inference: float              # the actor's policy.act, per observation
    actor_step: float             # a whole actor (env, act, adder, encode, send), per agent
                                  # step, wall time with a core to itself
    actor_cpu: float              # the same actor's CPU, all its threads, per agent step
    replay_insert_message: float  # replay process CPU per Insert message
    replay_insert_item: float     # ... per inserted item (on-policy: per env step it holds)
    replay_sample_item: float     # ... per sampled item (on-policy: per env step)
    replay_priority: float        # ... per priority updated
    decode: float                 # the learner's prefetch, decoding into tensors: per
                                  # batch (on-policy: per env step); inside learner_overhead
    update: float                 # learner.step alone, wall: per batch (on-policy: per env
                                  # step trained on, its minibatches grow with the update)
    update_cpu: float             # the same, CPU (torch's intra-op threads: can be > wall)
    learner_overhead: float = 0.0  # the learner's loop beside learner.step, wall: decode,
                                   # priorities sent, weights published (one lock for all)
    learner_cpu_overhead: float = 0.0  # the same, CPU
    publish: float = 0.0          # the learner's weights out, per version (on-policy)
    replay_seen: float = 0.0      # the replay's CPU per env step while a real actor wrote:
                                  # a check on the insert terms, not used by the model
    sources: dict[str, str] = field(default_factory=dict)  # a cost not measured: whence

    @property
    def actor_rest(self) -> float:
        """What the actor spends per agent step beside its env and its policy: the adder,
        DQN's initial priorities (a forward pass per message), encoding and sending."""
        return max(0.0, self.actor_step - self.env_step - self.inference)


@dataclass(frozen=True)
class Workload:
    """An algorithm on an env, as the run's resolved config shapes it."""

    name: str
    on_policy: bool
    batch_size: int               # items per update (on-policy: one rollout per actor)
    samples_per_insert: float = 1.0
    items_per_message: int = 1
    env_steps_per_update: int = 0      # on-policy: the update's size, whatever the actors
    rollout_length: int | None = None  # on-policy: given, it wins (the update grows with
                                       # the actors, as RolloutShape says)
    priorities: bool = True       # off-policy: the learner sends a priority per sampled item


@dataclass(frozen=True)
class Machine:
    name: str
    cores_per_node: float
    nodes: int = 1
    gpu: bool = False


@dataclass(frozen=True)
class Scenario:
    workload: Workload
    machine: Machine
    actors: int
    envs_per_actor: int
    replay_processes: int = 1


@dataclass(frozen=True)
class Prediction:
    env_steps_per_s: float
    updates_per_s: float
    samples_per_insert: float     # held by the limiter (on-policy: each rollout once)
    bottleneck: str
    bounds: dict[str, float]      # env steps/s each stage alone would allow

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(scenario: Scenario, costs: Costs) -> Prediction:
    if scenario.workload.on_policy:
        return _on_policy(scenario, costs)
    return _off_policy(scenario, costs)


def actors_on_busiest_node(scenario: Scenario) -> int:
    """Ray spreads actors over the nodes; the learner and the replay service's node holds
    its share of them, rounded up."""
    return math.ceil(scenario.actors / scenario.machine.nodes)


def _off_policy(scenario: Scenario, costs: Costs) -> Prediction:
    work = scenario.workload
    updates_per_env_step = work.samples_per_insert / work.batch_size
    sampled_per_env_step = work.samples_per_insert
    replay_per_env_step = (costs.replay_insert_item
                           + costs.replay_insert_message / work.items_per_message
                           + sampled_per_env_step * costs.replay_sample_item
                           + (sampled_per_env_step * costs.replay_priority
                              if work.priorities else 0.0))
    learner_per_update = costs.update + costs.learner_overhead
    learner_cpu_per_update = costs.update_cpu + costs.learner_cpu_overhead
    share = actors_on_busiest_node(scenario) / scenario.actors  # of the env steps
    node_cpu_per_env_step = (share * costs.actor_cpu + replay_per_env_step
                             + updates_per_env_step * learner_cpu_per_update)
    bounds = {
        "actors": scenario.actors / costs.actor_step,
        "learner": 1.0 / (updates_per_env_step * learner_per_update),
        "replay": scenario.replay_processes / replay_per_env_step,
        "cores": scenario.machine.cores_per_node / node_cpu_per_env_step,
    }
    bottleneck = min(bounds, key=bounds.__getitem__)
    env_steps = bounds[bottleneck]
    return Prediction(env_steps, env_steps * updates_per_env_step, work.samples_per_insert,
                      bottleneck, bounds)


def update_env_steps(scenario: Scenario) -> int:
    """The env steps one on-policy update trains on: T x actors x envs, T given or derived
    from env_steps_per_update as ``algorithms.actor_critic.shape_rollouts`` does."""
    work = scenario.workload
    envs = scenario.actors * scenario.envs_per_actor
    length = work.rollout_length or max(1, math.floor(work.env_steps_per_update / envs + 0.5))
    return length * envs


def _on_policy(scenario: Scenario, costs: Costs) -> Prediction:
    steps = update_env_steps(scenario)
    per_actor = steps / scenario.actors
    # the actors on the busiest node, each wanting actor_cpu / actor_step cores at once
    wanted = actors_on_busiest_node(scenario) * costs.actor_cpu / costs.actor_step
    stretch = max(1.0, wanted / scenario.machine.cores_per_node)
    collect = per_actor * costs.actor_step * stretch
    transit = (scenario.actors * costs.replay_insert_message + costs.publish
               + steps * (costs.replay_insert_item + costs.replay_sample_item))
    train = steps * (costs.update + costs.learner_overhead)
    period = collect + transit + train
    bounds = {"actors": steps / collect, "learner": steps / train,
              "replay": steps / transit if transit > 0 else math.inf}
    bottleneck = "actors" if collect >= train else "learner"
    if stretch > 1.0:
        bottleneck = "cores" if collect >= train else "learner"
        bounds["cores"] = steps / collect
    return Prediction(steps / period, 1.0 / period, 1.0, bottleneck, bounds)
