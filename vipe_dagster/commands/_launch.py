"""Launch runs of the workspace's code location through the instance's run launcher (CLI hand-off).

``vipe-dagster demo`` used to call ``execute_in_process``: such runs carry no code-location origin, so the UI's
Overview timeline and the job's Runs tab do not list them and Re-execute warns about a different version. Here
the code location is loaded from ``workspace.yaml`` (a code server process, as ``dagster dev`` does), each run
is created from the *remote* job (its snapshot, execution plan and origin) and handed to
``instance.launch_run`` (the instance's run launcher: a run worker process per run). The caller waits for
the runs with :func:`wait` and reads their events from the instance.
Runs are launched directly, not queued: the local instance's ``QueuedRunCoordinator`` would wait for a
daemon, which only ``vipe-dagster ui`` starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

LOCATION = "vipe_dagster"  # location_name in workspace.yaml


@dataclass
class Workspace:
    """A loaded workspace: the request context and the one code location the demo launches from."""

    instance: Any
    context: Any  # WorkspaceRequestContext
    location: Any  # CodeLocation
    repository: Any  # RemoteRepository

    def launch(self, job_name: str, run_config: Mapping[str, Any] | None = None, *,
               partition_key: str | None = None, asset_selection: list | None = None,
               tags: Mapping[str, str] | None = None) -> str:
        """Create a run of ``job_name`` (optionally a subset of its assets, with the checks on them) from the
        remote job and launch it; returns the run id. The run records the remote origin (code location,
        repository, job), so the UI lists it under the job and can re-execute it."""
        import dagster as dg
        from dagster._core.definitions.selector import JobSubsetSelector

        keys = {dg.AssetKey.from_coercible(k) for k in asset_selection} if asset_selection else None
        checks = ({k for k in self.repository.asset_graph.asset_check_keys if k.asset_key in keys}
                  if keys is not None else None)
        selector = JobSubsetSelector(location_name=self.location.name, repository_name=self.repository.name,
                                     job_name=job_name, op_selection=None, asset_selection=keys,
                                     asset_check_selection=checks)
        remote_job = self.location.get_job(selector)
        run_config = dict(run_config or {})
        run_tags = {**remote_job.tags, **(tags or {})}
        if partition_key is not None:
            run_tags["dagster/partition"] = partition_key
        plan = self.location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None,
                                                known_state=None, instance=self.instance)
        run = self.instance.create_run(
            job_name=job_name, run_id=None, run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None, status=None, root_run_id=None, parent_run_id=None, tags=run_tags,
            job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(keys) if keys is not None else None,
            asset_check_selection=frozenset(checks) if checks is not None else None,
            asset_graph=self.repository.asset_graph,
        )
        self.instance.launch_run(run.run_id, self.context)
        return run.run_id


@contextmanager
def open_workspace(instance, workspace_yaml: str, location: str = LOCATION) -> Iterator[Workspace]:
    """Load ``workspace_yaml`` (its code server runs while the context is open) and yield ``location``."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace_yaml)]), version=dg.__version__,
                                 read_only=False, code_server_log_level="WARNING") as process_context:
        ctx = process_context.create_request_context()
        errors = ctx.get_code_location_error(location) if ctx.has_code_location_error(location) else None
        if errors is not None:  # the import error of the definitions, as the UI would show it
            raise ConfigError(f"code location {location!r} of {workspace_yaml} failed to load:\n{errors.to_string()}")
        if not ctx.has_code_location(location):
            raise ConfigError(f"{workspace_yaml} has no code location named {location!r}")
        loc = ctx.get_code_location(location)
        repos = list(loc.get_repositories().values())
        if len(repos) != 1:
            raise ConfigError(f"code location {location!r} has {len(repos)} repositories; expected one")
        yield Workspace(instance=instance, context=ctx, location=loc, repository=repos[0])


def wait(instance, run_ids: list[str], timeout_s: float = 3600.0, poll_s: float = 0.5) -> dict[str, Any]:
    """Wait until every run is finished (success, failure or canceled); returns ``{run_id: DagsterRun}``.
    A run still unfinished after ``timeout_s`` is reported as it stands."""
    deadline = time.monotonic() + timeout_s
    runs: dict[str, Any] = {}
    pending = list(run_ids)
    while pending:
        for rid in list(pending):
            run = instance.get_run_by_id(rid)
            if run is not None and run.is_finished:
                runs[rid] = run
                pending.remove(rid)
        if pending:
            if time.monotonic() > deadline:
                for rid in pending:
                    runs[rid] = instance.get_run_by_id(rid)
                break
            time.sleep(poll_s)
    return runs


def run_events(instance, run_id: str) -> list:
    """The Dagster events (materializations, check evaluations, step failures, ...) of one run, in order."""
    return [e.dagster_event for e in instance.all_logs(run_id) if e.is_dagster_event]
