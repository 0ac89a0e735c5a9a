"""Live scaling without Ray: the fleet over real local components (replay service, learner,
actors as threads, gRPC over loopback), the control endpoint over real gRPC, and the
hand-off of requests from the endpoint's threads to the watch loop's."""

import threading

import grpc
import pytest

from shoal.algorithms.registry import ALGORITHMS
from shoal.launcher.components import ActorComponent, LearnerComponent, ReplayComponent, Wiring
from shoal.launcher.config import why_actor_count_is_fixed
from shoal.launcher.control import ControlClient, ControlServer, ScaleRequests
from shoal.launcher.fleet import ActorFleet, ScaleResult, ScalingRefused
from shoal.launcher.launch import LocalLaunch
from shoal.launcher.run_dir import EventLog
from shoal.protos import control_pb2, control_pb2_grpc

from ..conftest import run_config, wait_until
from .live import CONDITION, LIVE_TEST_TIMEOUT
from .test_train_local import FAST

TOKEN = "control-test-token"


class GatedLaunch(LocalLaunch):
    """Local components whose readiness the test opens, as Ray's would open once the
    cluster has a free CPU; a kill stops the component, as Ray's ends the process."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.killed: list[ActorComponent] = []

    def when_ready(self, handle: ActorComponent) -> bool:
        return self.gate.is_set()  # ready now, or never until the test says

    def is_ready(self, token: bool) -> bool:
        return token or self.gate.is_set()

    def kill(self, handle: ActorComponent) -> None:
        self.killed.append(handle)
        handle.stop()


@pytest.fixture
def run(tmp_path):
    """A replay service and a learner in this process, and a fleet of actors for them
    (started at once while the launch's gate is open, as it is unless a test closes it)."""
    config = run_config(algorithm=FAST, learner={"checkpoint_every": 10**9},
                        collection={"envs_per_actor": 2})
    wiring = Wiring(TOKEN)
    replay = ReplayComponent(config.table, config.replay, wiring, None)
    learner = LearnerComponent(config, wiring, replay.address(), str(tmp_path), None)
    metrics: dict[str, str] = {}
    changes = []

    def start(index: int, num_actors: int) -> ActorComponent:
        return ActorComponent(config, wiring, index, num_actors, replay.address(),
                              learner.address())

    with EventLog(tmp_path / "events.jsonl") as events:
        launch = GatedLaunch()
        fleet = ActorFleet(launch, start, events, metrics,
                           on_metrics_change=lambda: changes.append(sorted(metrics)),
                           max_actors=4)
        try:
            yield fleet, replay, metrics, changes, tmp_path / "events.jsonl", launch
        finally:
            fleet.stop_collecting()
            learner.stop(checkpoint=False)
            replay.stop()
            fleet.stop()


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_fleet_adds_and_removes_actors_and_loses_nothing(run):
    fleet, replay, metrics, changes, events, _ = run
    fleet.start(1)
    wait_until(lambda: fleet.poll().env_steps > 500, timeout=CONDITION, what="the first actor")

    grown = fleet.scale_to(3)
    assert (grown.previous, grown.actors, len(fleet)) == (1, 3, 3)
    assert sorted(metrics) == ["actor-0", "actor-1", "actor-2"] == changes[-1]
    # Not only stepped: handed items to their writers (an n-step item needs n steps), so
    # the two removed below have something to hand over.
    removed = [fleet.handles[1], fleet.handles[2]]
    wait_until(lambda: all(handle.actor.stats.items_sent > 0 for handle in removed),
               timeout=CONDITION, what="the new actors to send items")

    before = fleet.poll().env_steps
    shrunk = fleet.scale_to(1)
    assert (shrunk.previous, shrunk.actors, sorted(fleet.handles)) == (3, 1, [0])
    assert sorted(metrics) == ["actor-0"]
    # What the removed actors handed their writers, the replay service acknowledged.
    assert shrunk.removed_items_sent > 0
    assert shrunk.removed_items_stored == shrunk.removed_items_sent
    # the flush is part of that: what was in flight when they were asked to leave
    assert 0 <= shrunk.removed_items_flushed <= shrunk.removed_items_stored
    assert all(handle.done() for handle in removed)
    # Their steps still count, and the one left keeps collecting.
    after = fleet.poll().env_steps
    assert after >= before
    wait_until(lambda: fleet.poll().env_steps > after + 200, timeout=CONDITION,
               what="the remaining actor to keep stepping")
    assert replay.poll()["inserted_items"] >= shrunk.removed_items_stored
    assert '"event": "scale", ' in events.read_text()


@pytest.mark.timeout(LIVE_TEST_TIMEOUT)
def test_an_actor_not_started_yet_is_pending_polled_once_ready_and_removed_first(run):
    fleet, _, metrics, _, _, launch = run
    fleet.start(1)
    launch.gate.clear()  # the cluster has no free CPU now
    grown = fleet.scale_to(2)
    assert (grown.actors, grown.pending_actors, fleet.pending) == (2, 1, 1)
    assert sorted(metrics) == ["actor-0"] and sorted(fleet.running()) == [0]
    steps = fleet.poll().env_steps  # polls the started one only, and does not wait
    wait_until(lambda: fleet.poll().env_steps > steps, timeout=CONDITION,
               what="the started actor to go on stepping")

    launch.gate.set()  # Ray placed it: the next poll takes it in
    fleet.poll()
    assert fleet.pending == 0 and sorted(metrics) == ["actor-0", "actor-1"]

    launch.gate.clear()
    assert fleet.scale_to(3).pending_actors == 1
    shrunk = fleet.scale_to(2)  # the pending one goes first, killed: nothing to flush
    assert (shrunk.actors, shrunk.pending_actors, shrunk.removed_items_sent) == (2, 0, 0)
    assert len(launch.killed) == 1 and sorted(fleet.handles) == [0, 1]

    launch.gate.clear()
    fleet.scale_to(3)
    fleet.stop_collecting()
    fleet.stop()  # the pending one is killed, the others stopped
    assert len(launch.killed) == 2 and fleet.pending == 0


def test_fleet_refuses_counts_out_of_range_and_changes_nothing(run):
    fleet, _, metrics, _, _, _ = run
    fleet.start(1)
    for count in (0, 5):
        with pytest.raises(ValueError, match=rf"actors: expected 1..4, got {count}"):
            fleet.scale_to(count)
    assert len(fleet) == 1 and sorted(metrics) == ["actor-0"]


def test_on_policy_runs_keep_their_actor_count():
    assert why_actor_count_is_fixed(ALGORITHMS["dqn"]) is None
    assert why_actor_count_is_fixed(ALGORITHMS["sac"]) is None
    reason = why_actor_count_is_fixed(ALGORITHMS["ppo"])
    assert reason is not None and "one rollout from each actor per update" in reason
    fleet = ActorFleet(LocalLaunch(), lambda index, n: None, None, {}, lambda: None,
                       max_actors=4, refuse_scaling=reason)
    with pytest.raises(ScalingRefused, match="fixed for the run"):
        fleet.scale_to(2)


def test_requests_are_applied_on_the_loops_thread_and_answered():
    requests = ScaleRequests()
    answers = []
    caller = threading.Thread(target=lambda: answers.append(requests.submit(3, timeout=10)))
    caller.start()
    applied_on = []

    def scale(count: int) -> ScaleResult:
        applied_on.append(threading.current_thread())
        return ScaleResult(previous=1, actors=count)

    wait_until(lambda: (requests.apply_pending(scale), bool(applied_on))[1],
               what="the request to arrive")
    caller.join(10)
    assert applied_on == [threading.current_thread()]
    assert answers == [ScaleResult(previous=1, actors=3)]


def test_a_request_the_run_did_not_take_in_time_is_withdrawn():
    requests = ScaleRequests()
    with pytest.raises(TimeoutError):
        requests.submit(3, timeout=0.05)
    applied = []

    def scale(count: int) -> ScaleResult:
        applied.append(count)
        return ScaleResult(1, count)

    requests.apply_pending(scale)
    assert applied == []  # nothing changes after the caller gave up


def test_control_endpoint_needs_the_run_token_and_names_bad_fields():
    requests = ScaleRequests()
    status = {"actors": 2, "env_steps": 1234, "updates": 56}
    with ControlServer(TOKEN, requests, lambda: status) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = control_pb2_grpc.RunControlStub(channel)
            for metadata in [(), (("authorization", "Bearer wrong"),)]:
                with pytest.raises(grpc.RpcError) as raised:
                    stub.Scale(control_pb2.ScaleRequest(actors=3), metadata=metadata)
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with ControlClient(server.address, TOKEN) as client:
            assert client.status().env_steps == 1234

            def refuse(count: int) -> ScaleResult:
                raise ValueError(f"actors: expected 1..4, got {count}")

            answer = []
            caller = threading.Thread(target=lambda: answer.append(_status_of(client, 9)))
            caller.start()
            wait_until(lambda: (requests.apply_pending(refuse), not caller.is_alive())[1],
                       what="the refusal to reach the client")
            assert answer == [(grpc.StatusCode.INVALID_ARGUMENT, "actors: expected 1..4, got 9")]


def _status_of(client: ControlClient, actors: int) -> tuple[grpc.StatusCode, str]:
    try:
        client.scale(actors)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""
