"""TLS on a real loopback server: a client that trusts the run's certificate talks to it;
a plain client, or one trusting another certificate, does not get through."""

import grpc
import numpy as np
import pytest

from shoal.protos.transport import Tls
from shoal.replay_service import ReplayClient, ReplayServer

from ..conftest import TOKEN, prioritized_table, transitions


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    return Tls.generate(root / "run"), Tls.generate(root / "other")


def test_a_client_trusting_the_runs_certificate_inserts_and_samples(certificates):
    tls, _ = certificates
    with ReplayServer([prioritized_table()], token=TOKEN, tls=tls) as server, \
            ReplayClient(server.address, TOKEN, tls=Tls(tls.cert)) as client:
        with client.writer("transitions") as writer:
            writer.extend(transitions(20))
        with client.sample("transitions", 8, num_batches=1) as batches:
            batch = next(batches)
    assert server.tables["transitions"].size == 20
    assert np.all(batch.columns["action"] < 20)


@pytest.mark.parametrize("client_tls", ["plain", "other certificate"])
def test_a_client_without_the_runs_certificate_gets_nothing(certificates, client_tls):
    tls, other = certificates
    trusted = None if client_tls == "plain" else Tls(other.cert)
    with ReplayServer([prioritized_table()], token=TOKEN, tls=tls) as server, \
            ReplayClient(server.address, TOKEN, tls=trusted) as client, \
            pytest.raises(grpc.RpcError) as raised:
        client.info()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_generated_key_is_private(certificates, tmp_path):
    Tls.generate(tmp_path)
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
