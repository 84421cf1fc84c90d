"""xdray's local cluster beside another Ray instance on the same machine: its workers find their
own cluster's state API (Ray Train's placement-group cleaner asks it without an address, and
printed "Found multiple active Ray instances" tracebacks before)."""

import subprocess
import sys
import time

import pytest

OTHER_RAY = """
import sys, time
import ray
ray.init(num_cpus=1, include_dashboard=False)
print("up", flush=True)
time.sleep(120)
"""


@pytest.fixture
def another_ray_instance():
    process = subprocess.Popen([sys.executable, "-c", OTHER_RAY], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "up"
        yield
    finally:
        process.kill()
        process.wait()
        time.sleep(2)  # its GCS goes with its driver


def test_workers_reach_their_own_cluster_with_another_ray_running(ray_local, another_ray_instance):
    ray = ray_local

    @ray.remote(num_cpus=0)
    def nodes_seen_by_the_state_api():
        from ray.util.state import list_nodes

        return sorted(n.node_id for n in list_nodes())

    mine = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    assert ray.get(nodes_seen_by_the_state_api.remote()) == mine


def test_the_drivers_own_environment_is_left_alone(ray_local):
    """Only the workers are pointed at this cluster's state API: a `ray job submit --address X` that
    the driver's process (or a test) runs must still reach X."""
    import os

    assert "RAY_API_SERVER_ADDRESS" not in os.environ


def test_log_throttle_lets_a_line_through_once_its_interval_has_passed():
    from xdray.core.runtime import LogThrottle

    hourly = LogThrottle(3600)
    assert not hourly.due() and not hourly.due()  # counted from its start, not from the first call
    hourly.last -= 3600
    assert hourly.due() and not hourly.due()  # the interval starts again after each line
    assert all(LogThrottle(0).due() for _ in range(3))
    assert hourly.due(force=True) and not hourly.due()  # a forced line restarts the interval too
