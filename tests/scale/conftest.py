"""A real two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head node and a
second worker node, each its own raylet with one CPU), connected for the module and shut down after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

_NODE = {"num_cpus": 1, "object_store_memory": 150 * 1024 * 1024}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'tunegate[ray]')")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        **_NODE, "include_dashboard": False,
        # notice a dead node within a couple of seconds, not the production default of ~30 s
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    cluster.add_node(**_NODE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
