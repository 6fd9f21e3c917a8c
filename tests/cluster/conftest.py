"""The real 3-node cluster the tests of this folder share: one per run, since forming it
takes about half a minute. Every test leaves its three nodes running, as it found them."""

from __future__ import annotations

import pytest

from tests.rabbitmq_cluster import RabbitCluster


@pytest.fixture(scope="session")
def rabbitmq_cluster():
    """A running cluster of this run's own; killed and its dir removed afterwards, even when
    a test (or forming the cluster) fails. ``stop`` fails if any of its VMs survives."""
    cluster = RabbitCluster.for_this_run()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.base_dir.exists(), f"{cluster.base_dir} was left behind"
