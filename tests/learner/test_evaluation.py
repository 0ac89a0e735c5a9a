"""Evaluation during training: the schedule, the kept best (``best.pt``), failures that
end the run, and the whole loop with real parts (replay server, DQN learner, an actor,
the greedy evaluator), whose evaluations write nothing to replay."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from shoal.actors.actor import Actor
from shoal.actors.config import CollectionConfig
from shoal.actors.envs import probe_spec
from shoal.actors.evaluation import GreedyEvaluator
from shoal.algorithms.base import Weights
from shoal.algorithms.dqn import DQNConfig
from shoal.algorithms.registry import ALGORITHMS
from shoal.learner.checkpoint import BEST, CHECKPOINT, load_checkpoint
from shoal.learner.evaluation import Evaluation, EvaluationFailed, read_best
from shoal.learner.learner import LearnerLoop
from shoal.learner.metrics import LearnerCollector
from shoal.learner.parameter_service import ParameterServer
from shoal.replay_service import ReplayClient, ReplayServer
from shoal.replay_service.table import Table

from ..conftest import TOKEN, wait_until

DQN = ALGORITHMS["dqn"]
SPEC = probe_spec("CartPole-v1")
CONFIG = DQNConfig(batch_size=32, min_size_to_sample=200, samples_per_insert=8,
                   error_buffer=8 * 2048, items_per_message=64)


class Scripted:
    """An evaluate callable that returns the returns it is given, each evaluation once the
    test lets it finish: the schedule is then the test's to observe."""

    def __init__(self, *returns: list[float]) -> None:
        self._returns = list(returns)
        self.played: list[tuple[Weights, int]] = []
        self.release = threading.Semaphore(0)

    def __call__(self, weights: Weights, version: int) -> list[float]:
        self.played.append((weights, version))
        assert self.release.acquire(timeout=30), "the test never let the evaluation end"
        return self._returns.pop(0)


def finish(evaluation: Evaluation, scripted: Scripted, count: int) -> None:
    """Lets the running evaluation end and waits until it is the ``count``-th result."""
    scripted.release.release()
    wait_until(lambda: len(evaluation.results) == count and not evaluation.running,
               what=f"evaluation {count} to finish")


def learner():
    torch.manual_seed(0)
    return DQN.make_learner(CONFIG, SPEC, torch.device("cpu"))


def test_starts_at_each_multiple_of_the_env_steps_and_never_two_at_once(tmp_path):
    scripted = Scripted([1.0], [2.0], [3.0])
    evaluation = Evaluation(scripted, every_env_steps=1000, checkpoint_dir=tmp_path)
    asked: list[str] = []

    def weights() -> Weights:
        asked.append("weights")
        return {}

    def state() -> dict:
        asked.append("state")
        return {}

    def maybe(env_steps: int) -> bool:
        return evaluation.maybe_start(env_steps, updates=env_steps // 10, version=env_steps,
                                      weights=weights, state=state, counters=dict)

    assert not maybe(999) and not asked  # nothing copied for an evaluation not due
    assert maybe(1000) and evaluation.running
    assert not maybe(2500)  # due, but the first still plays
    finish(evaluation, scripted, 1)
    assert evaluation.results[0].env_steps == 1000 and evaluation.results[0].version == 1000
    assert maybe(2500)  # the one due meanwhile starts once the first is done
    finish(evaluation, scripted, 2)
    assert not maybe(2999)  # 2,000 was passed while waiting: the next is 3,000
    assert maybe(3000)
    finish(evaluation, scripted, 3)
    assert [r.env_steps for r in evaluation.results] == [1000, 2500, 3000]
    assert [r.mean_return for r in evaluation.drain()] == [1.0, 2.0, 3.0]
    assert evaluation.drain() == []  # each result handed out once
    assert len(asked) == 2 * 3  # weights and state, once per evaluation started
    evaluation.close()


def test_a_resumed_runs_first_evaluation_is_at_the_next_multiple():
    evaluation = Evaluation(Scripted(), every_env_steps=1000, env_steps=14_200)
    assert not evaluation.due(14_999) and evaluation.due(15_000)


def test_best_pt_is_written_only_on_improvement_with_the_state_captured_at_the_start(tmp_path):
    scripted = Scripted([10.0, 20.0], [12.0], [15.0], [30.0])
    evaluation = Evaluation(scripted, every_env_steps=100, checkpoint_dir=tmp_path)
    model = learner()
    online = model.online

    def start(env_steps: int) -> dict[str, torch.Tensor]:
        """Starts an evaluation of the learner as it is, then trains on (changes every
        weight in place); returns the weights it had at the start."""
        before = {k: v.clone() for k, v in online.state_dict().items()}
        evaluation.start(env_steps, updates=model.updates, version=env_steps // 100,
                         weights=model.weights(), state=model.state_dict(),
                         counters={"env_steps": env_steps, "published_version": 7})
        with torch.no_grad():
            for parameter in online.parameters():
                parameter.add_(1.0)
        return before

    def saved_online() -> dict[str, torch.Tensor]:
        return load_checkpoint(tmp_path / BEST)["learner"]["online"]

    first = start(100)
    finish(evaluation, scripted, 1)
    best = load_checkpoint(tmp_path / BEST)
    assert best["counters"] == {"env_steps": 100, "published_version": 7, "eval_return": 15.0,
                                "eval_version": 1, "eval_env_steps": 100}
    assert all(torch.equal(saved_online()[k], v) for k, v in first.items())
    assert evaluation.best == 15.0
    assert not (tmp_path / CHECKPOINT).exists()  # best.pt only: learner.pt is the loop's

    for env_steps, count in ((200, 2), (300, 3)):  # worse (12), then equal (15): kept
        start(env_steps)
        finish(evaluation, scripted, count)
        assert load_checkpoint(tmp_path / BEST)["counters"]["eval_version"] == 1
        assert all(torch.equal(saved_online()[k], v) for k, v in first.items())
    assert evaluation.best == 15.0

    fourth = start(400)
    finish(evaluation, scripted, 4)
    assert evaluation.best == 30.0
    assert load_checkpoint(tmp_path / BEST)["counters"]["eval_version"] == 4
    assert all(torch.equal(saved_online()[k], v) for k, v in fourth.items())
    assert not all(torch.equal(saved_online()[k], v) for k, v in first.items())
    # the learner went on changing: best.pt is not its state now
    assert not any(torch.equal(saved_online()[k], v) for k, v in online.state_dict().items())
    evaluation.close()


def test_a_resumed_run_keeps_the_best_so_far_as_the_return_to_beat(tmp_path):
    scripted = Scripted([40.0])
    evaluation = Evaluation(scripted, every_env_steps=100, checkpoint_dir=tmp_path)
    evaluation.start(100, 0, 1, {}, learner().state_dict(), {"env_steps": 100})
    finish(evaluation, scripted, 1)
    evaluation.close()

    assert read_best(tmp_path) == 40.0
    scripted = Scripted([35.0], [45.0])
    resumed = Evaluation(scripted, every_env_steps=100, checkpoint_dir=tmp_path, env_steps=100)
    assert resumed.best == 40.0
    resumed.start(200, 0, 2, {}, learner().state_dict(), {"env_steps": 200})
    finish(resumed, scripted, 1)
    assert read_best(tmp_path) == 40.0 and resumed.best == 40.0  # 35 does not beat it
    resumed.start(300, 0, 3, {}, learner().state_dict(), {"env_steps": 300})
    finish(resumed, scripted, 2)
    assert read_best(tmp_path) == 45.0 and resumed.best == 45.0
    resumed.close()


def test_a_failing_evaluation_is_kept_and_raised(tmp_path):
    def broken(weights: Weights, version: int) -> list[float]:
        raise ValueError("the env would not reset")

    evaluation = Evaluation(broken, every_env_steps=100, checkpoint_dir=tmp_path)
    evaluation.raise_failure()  # nothing failed yet
    evaluation.start(100, 0, 1, {}, {}, {})
    wait_until(lambda: evaluation.error is not None, what="the evaluation to fail")
    with pytest.raises(EvaluationFailed, match="ValueError: the env would not reset"):
        evaluation.raise_failure()
    assert evaluation.traceback and "the env would not reset" in evaluation.traceback
    assert not evaluation.due(10**9)  # a failed one starts no more
    assert not (tmp_path / BEST).exists()
    evaluation.close()


def test_an_evaluation_still_playing_at_close_is_abandoned(tmp_path):
    scripted = Scripted([99.0])
    evaluation = Evaluation(scripted, every_env_steps=100, checkpoint_dir=tmp_path)
    evaluation.start(100, 0, 1, {}, {}, {})
    evaluation.close(timeout=0.05)
    scripted.release.release()  # it ends after the run moved on: nothing recorded
    wait_until(lambda: not evaluation.running, what="the abandoned evaluation to end")
    assert evaluation.results == [] and not (tmp_path / BEST).exists()


# ---------------------------------------------------------------- in the learner loop


class Run:
    """A replay server holding what a real actor collected (it stopped by itself, so all
    of it is stored), and a learner loop over it that ``start`` runs on a thread."""

    def __init__(self, tmp_path: Path, env_steps: int = 800) -> None:
        self.table = Table.from_spec(DQN.table(CONFIG, SPEC, 2))
        self.server = ReplayServer([self.table], token=TOKEN).start()
        self.replay = ReplayClient(self.server.address, TOKEN)
        self.parameters = ParameterServer(token=TOKEN).start()
        self.actor = Actor(DQN, CONFIG, "CartPole-v1", SPEC, CollectionConfig(2),
                           actor_index=0, num_actors=1, seed=0, replay=self.replay,
                           table=self.table.name, weights=None)
        self.actor.run(threading.Event(), max_env_steps=env_steps)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.checkpoints = tmp_path / "learner"

    def loop(self, evaluate: Callable[[Weights, int], list[float]],
             every: int = 2000) -> LearnerLoop:
        model = learner()
        evaluation = Evaluation(evaluate, every, self.checkpoints)
        # 1,000 run env steps per update: an evaluation due at each publish (10 updates)
        return LearnerLoop(model, replay=self.replay, table=self.table.name,
                           batch_size=CONFIG.batch_size, parameters=self.parameters,
                           device=torch.device("cpu"), publish_every=DQN.publish_every,
                           checkpoint_dir=self.checkpoints,
                           counters=lambda: {"env_steps": 1000 * model.updates},
                           evaluation=evaluation)

    def start(self, loop: LearnerLoop) -> None:
        def run() -> None:
            try:
                loop.run(self.stop)
            except BaseException as error:  # the test looks at it
                self.error = error

        self.thread = threading.Thread(target=run, name="test-learner")
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)
        self.replay.close()
        self.parameters.stop(grace=0.5)
        self.server.stop()


@pytest.fixture
def run(tmp_path):
    started = Run(tmp_path)
    yield started
    started.close()


def test_the_loop_evaluates_published_versions_and_writes_nothing_to_replay(run, tmp_path):
    sent = run.actor.stats.items_sent
    assert sent > 0 and run.actor.stats.items_stored == sent  # it stopped: all flushed
    assert run.table.stats().inserted_items == sent
    evaluator = GreedyEvaluator(DQN, CONFIG, "CartPole-v1", SPEC, episodes=3, seed=10_000)
    loop = run.loop(evaluator)
    assert loop.evaluation is not None
    collector = LearnerCollector(loop, "cpu", "test", "learner")
    names = {family.name for family in collector.collect()}
    assert not names & {"shoal_learner_eval_return", "shoal_learner_best_eval_return"}

    run.start(loop)
    evaluation = loop.evaluation
    wait_until(lambda: len(evaluation.results) >= 2 or run.error is not None,
               timeout=120, what="two evaluations while the learner trains")
    run.stop.set()
    run.thread.join(60)
    assert run.error is None, run.error

    # The evaluations played whole episodes (3 each, CartPole: one step per reward point),
    # and the table holds what the actor sent, not one item more.
    played = sum(sum(r.returns) for r in evaluation.results)
    assert played >= 2 * 3
    assert run.table.stats().inserted_items == sent == run.actor.stats.items_stored

    first = evaluation.results[0]
    # started right after a publish: version 1 is the initial weights, 2 those of update 10
    assert first.updates % DQN.publish_every == 0
    assert first.version == 1 + first.updates // DQN.publish_every
    assert first.env_steps == 1000 * first.updates and len(first.returns) == 3
    assert np.isfinite(first.mean_return) and first.seconds >= 0

    families = {family.name: family for family in collector.collect()}
    latest = evaluation.results[-1]
    assert families["shoal_learner_eval_return"].samples[0].value == latest.mean_return
    assert families["shoal_learner_best_eval_return"].samples[0].value == evaluation.best
    assert evaluation.best == max(r.mean_return for r in evaluation.results)

    # best.pt is a learner checkpoint of the version it scored: loaded into a fresh learner,
    # its weights play the same return from the same start states.
    best = load_checkpoint(run.checkpoints / BEST)
    assert best["counters"]["eval_return"] == evaluation.best
    scored = next(r for r in evaluation.results if r.mean_return == evaluation.best)
    assert best["counters"]["eval_version"] == scored.version
    assert best["counters"]["published_version"] == scored.version
    assert best["learner"]["updates"] == scored.updates
    fresh = DQN.make_learner(CONFIG, SPEC, torch.device("cpu"))
    fresh.load_state_dict(best["learner"])
    replayed = GreedyEvaluator(DQN, CONFIG, "CartPole-v1", SPEC, episodes=3, seed=10_000)
    assert replayed(fresh.weights(), 0) == list(scored.returns)


def test_a_failing_evaluation_ends_the_loop_with_its_error(run):
    def broken(weights: Weights, version: int) -> list[float]:
        raise RuntimeError("no display")

    loop = run.loop(broken)
    run.start(loop)
    wait_until(lambda: not run.thread.is_alive(), timeout=120,
               what="the loop to end on the evaluation's error")
    assert isinstance(run.error, EvaluationFailed), run.error
    assert "RuntimeError: no display" in str(run.error)


def test_the_last_weights_are_played_once_more_when_the_loop_has_ended(run):
    """Runs stop at a target or budget between two scheduled evaluations: the final one
    plays the weights the loop ended with (a new version, published first), and only if
    the last evaluation did not already play them."""
    played: list[int] = []

    def scripted(weights: Weights, version: int) -> list[float]:
        played.append(version)
        return [float(version)]  # later versions score better: the final one is the best

    loop = run.loop(scripted, every=12_000)  # 1,000 env steps per update: one at ~12
    run.start(loop)
    wait_until(lambda: loop.stats.updates >= 25 or run.error is not None, timeout=120,
               what="25 updates")
    run.stop.set()
    run.thread.join(60)
    assert run.error is None, run.error
    scheduled = list(loop.evaluation.results)
    updates = loop.learner.updates
    assert scheduled and scheduled[-1].updates < updates
    loop.final_evaluation()
    final = loop.evaluation.results[-1]
    assert final.final and final.updates == updates and not any(r.final for r in scheduled)
    assert final.version == loop.stats.published_version == played[-1]
    assert load_checkpoint(run.checkpoints / BEST)["learner"]["updates"] == updates
    loop.final_evaluation()  # nothing new to play: the same weights are not played twice
    assert loop.evaluation.results[-1] is final and played.count(final.version) == 1


def test_a_run_shorter_than_one_evaluation_period_gets_no_final_evaluation(run):
    loop = run.loop(lambda weights, version: [1.0], every=10**9)
    run.start(loop)
    wait_until(lambda: loop.stats.updates >= 3 or run.error is not None, timeout=120,
               what="3 updates")
    run.stop.set()
    run.thread.join(60)
    loop.final_evaluation()
    assert loop.evaluation.results == [] and not (run.checkpoints / BEST).exists()
