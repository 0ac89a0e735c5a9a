import pytest

from shoal.protos.tables import SampleToInsertRatio
from shoal.replay_service.config import ConfigError, server_config_from_dict

SIGNATURE = {"obs": {"dtype": "float32", "shape": [4]}, "action": {"dtype": "int64"}}


def config(**table):
    return {"tables": [{"name": "t", "max_size": 100, "signature": SIGNATURE, **table}]}


def test_a_full_config_builds_the_tables():
    loaded = server_config_from_dict({
        "checkpoint": {"directory": "/tmp/x", "every_seconds": 30},
        "tables": [
            {"name": "transitions", "max_size": 100, "signature": SIGNATURE,
             "selector": {"type": "prioritized", "alpha": 0.5},
             "rate_limiter": {"type": "sample_to_insert_ratio", "samples_per_insert": 4,
                              "min_size_to_sample": 10, "error_buffer": 40}},
            {"name": "rollouts", "queue": True, "max_size": 8, "signature": SIGNATURE},
        ],
    })
    transitions, rollouts = loaded.tables
    assert transitions.selector.describe() == "prioritized(alpha=0.5)"
    assert transitions.rate_limiter == SampleToInsertRatio(4, 10, 40)
    assert (rollouts.selector.describe(), rollouts.max_times_sampled) == ("fifo", 1)
    assert str(loaded.checkpoint_dir) == "/tmp/x" and loaded.checkpoint_every_seconds == 30


@pytest.mark.parametrize(("value", "message"), [
    ({"tables": []}, "tables: expected a non-empty list"),
    (config(selector={"type": "prioritized", "alpha": 3}),
     r"tables\[0\].selector.alpha: expected a number in \[0, 1\], got 3"),
    (config(selector={"type": "lifo"}), r"tables\[0\].selector.type: expected one of"),
    (config(rate_limiter={"type": "min_size", "min_size": 500}),
     r"tables\[0\].rate_limiter.min_size: expected 1..max_size \(100\), got 500"),
    (config(rate_limiter={"type": "min_size", "size": 5}), r"tables\[0\].rate_limiter: .*size"),
    (config(max_size="big"), r"tables\[0\].max_size: expected an integer"),
    (config(signature={"obs": {"dtype": "complex64"}}), r"tables\[0\].signature.obs.dtype"),
    (config(colour="red"), r"tables\[0\]: unknown key\(s\) \['colour'\]"),
    ({"tables": [config()["tables"][0]] * 2}, "tables: names must be distinct"),
    ({**config(), "checkpoint": {"every_seconds": -1}}, "checkpoint.every_seconds"),
])
def test_config_errors_name_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        server_config_from_dict(value)
