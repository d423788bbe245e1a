"""UI smoke test: the webserver loads workspace.yaml and its GraphQL API lists assets, partitions,
checks, the job and the sensors; SIGTERM stops it cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

QUERY = """
{
  assetNodes { assetKey { path } isPartitioned partitionKeys
               assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } sensors { name } } } }
}
"""


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_webserver_lists_assets_partitions_and_checks(tmp_path, dagster_home, port_maker):
    import dagster as dg

    inst = dg.DagsterInstance.get()
    inst.add_dynamic_partitions("videos", ["clip-a", "take_01-cam02"])
    inst.add_dynamic_partitions("takes", ["take_01"])
    inst.add_dynamic_partitions("ego_views", ["take_01__cam01", "take_01__cam02"])
    inst.dispose()
    port = port_maker()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "VIPE_ARTIFACT_ROOT": str(tmp_path / "art"),
           "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    exe = Path(sys.executable).with_name("dagster-webserver")
    log = open(tmp_path / "webserver.log", "wb")
    proc = subprocess.Popen([str(exe), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    data = None
    try:
        deadline = time.time() + 150
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                data = _graphql(port, QUERY)["data"]
                if any(n["assetKey"]["path"] == ["processed_video"] for n in data["assetNodes"]):
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert data, "webserver never answered GraphQL: " + (tmp_path / "webserver.log").read_text()[-3000:]
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert {"raw_video", "processed_video"} <= set(nodes)
        for name in ("raw_video", "processed_video"):
            assert nodes[name]["isPartitioned"]
            assert sorted(nodes[name]["partitionKeys"]) == ["clip-a", "take_01-cam02"]
        checks = {c["name"]: c for c in nodes["processed_video"]["assetChecksOrError"]["checks"]}
        assert checks["frame_range_within_video"]["blocking"] is True
        if "pose_trajectory" in nodes:
            names = {c["name"] for c in nodes["pose_trajectory"]["assetChecksOrError"]["checks"]}
            assert {"pose_valid", "frame_metrics_expectations"} <= names
        for name in ("depth_maps", "dynamic_masks", "colmap_export"):
            assert sorted(nodes[name]["partitionKeys"]) == ["clip-a", "take_01-cam02"]
        depth_checks = {c["name"]: c for c in nodes["depth_maps"]["assetChecksOrError"]["checks"]}
        assert depth_checks["depth_valid"]["blocking"] is True
        assert sorted(nodes["ego_render"]["partitionKeys"]) == ["take_01__cam01", "take_01__cam02"]
        assert nodes["best_ego_view"]["partitionKeys"] == ["take_01"]
        assert "render_coverage" in {c["name"] for c in nodes["ego_render"]["assetChecksOrError"]["checks"]}
        repo = data["repositoriesOrError"]["nodes"][0]
        assert {"video_pipeline", "ego_render_job", "best_ego_view_job"} <= {j["name"] for j in repo["jobs"]}
        assert {"incoming_videos_folder", "incoming_videos_s3", "egoexo_takes"} <= {s["name"] for s in repo["sensors"]}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        log.close()
    assert rc == 0, f"webserver did not stop cleanly on SIGTERM (rc={rc})"
    # its code server child goes with it (it may take a few seconds to notice)
    deadline, leftover = time.time() + 30, ["?"]
    while leftover and time.time() < deadline:
        leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.5)
    if leftover:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not leftover, f"processes left in the webserver's session: {leftover}"
