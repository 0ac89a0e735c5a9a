"""The real ``shoal replay-server`` process: SIGTERM checkpoints, a restart restores."""

import numpy as np
import pytest
import yaml

from shoal.replay_service import ReplayClient
from shoal.replay_service.process import SpawnedReplayServer

from ..conftest import transitions

CONFIG = {
    "tables": [{
        "name": "transitions",
        "max_size": 1000,
        "selector": {"type": "prioritized", "alpha": 1.0},
        "rate_limiter": {"type": "min_size", "min_size": 1},
        "signature": {
            "obs": {"dtype": "float32", "shape": [4]},
            "action": {"dtype": "int64", "shape": []},
            "reward": {"dtype": "float32", "shape": []},
            "next_obs": {"dtype": "float32", "shape": [4]},
            "discount": {"dtype": "float32", "shape": []},
        },
    }],
}


def test_sigterm_checkpoints_and_a_restart_samples_with_the_same_priorities(tmp_path):
    config = tmp_path / "tables.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    checkpoints = tmp_path / "checkpoints"
    priorities = np.arange(1.0, 101.0)
    with SpawnedReplayServer(config, tmp_path / "first", checkpoint_dir=checkpoints) as first:
        with ReplayClient(first.address, first.token) as client, \
                client.writer("transitions") as writer:
            writer.extend(transitions(100), priorities=np.ones(100))
        with ReplayClient(first.address, first.token) as client:
            client.update_priorities("transitions", np.arange(100), priorities)
    assert first.process.returncode == 0
    assert (checkpoints / "LATEST").exists()

    with SpawnedReplayServer(config, tmp_path / "second", checkpoint_dir=checkpoints) as second, \
            ReplayClient(second.address, second.token) as client:
        info = client.info()["transitions"]
        assert (info.size, info.inserted_items, info.priority_updates) == (100, 100, 100)
        with client.sample("transitions", 64, num_batches=4) as batches:
            for batch in batches:
                np.testing.assert_allclose(batch.probabilities,
                                           priorities[batch.keys] / priorities.sum())
                np.testing.assert_array_equal(batch.columns["action"], batch.keys)
    assert "restored from" in (tmp_path / "second" / "replay-server.log").read_text()


def test_a_bad_config_fails_to_start_with_one_line(tmp_path):
    config = tmp_path / "tables.yaml"
    config.write_text(yaml.safe_dump({"tables": [{**CONFIG["tables"][0], "max_size": -3}]}))
    with pytest.raises(RuntimeError, match="exited with 2") as raised:
        SpawnedReplayServer(config, tmp_path / "bad")
    log_lines = (tmp_path / "bad" / "replay-server.log").read_text().strip().splitlines()
    assert log_lines == ["shoal: error: tables[0].max_size: expected >= 1, got -3"]
    assert "Traceback" not in raised.value.args[0]
