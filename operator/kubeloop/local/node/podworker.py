"""One pod on the local node: its containers run as processes, its status written as the kubelet does.

A `PodWorker` is the kubelet's pod worker for one pod bound to this node:

1. volumes are prepared (see volumes.py); a volume type the node cannot emulate, an image it
   cannot run (ImageNotRunnableLocally) or a sidecar init container ends the pod Failed
   with a reason and a message, never a fake success;
2. init containers run one after the other, each to a zero exit code;
3. the containers run together; each restarts in place as `restartPolicy` says (Always,
   OnFailure, Never), after a back-off that doubles from the node's
   `container_restart_backoff_seconds` up to 5 minutes (CrashLoopBackOff), with
   `restartCount` counting the restarts;
4. probes: a startupProbe first, then readiness (the container's `ready`) and liveness
   (after `failureThreshold` failures the container is killed and restarted by policy);
5. a container whose configuration cannot be resolved yet (a missing Secret key...) waits
   with reason CreateContainerConfigError and is retried, as the kubelet retries;
6. `terminate()` (pod deletion, node shutdown) sends SIGTERM to every container's process
   group, waits for the grace period, then SIGKILLs; the pod ends in a terminal phase.

Not emulated (each documented where it matters): lifecycle hooks (postStart, preStop),
sidecar init containers, OOM kills (`OOMKilled`) and resource limits in general,
`terminationMessagePath`, ephemeral containers, in-place resize.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.node import localnet, podstatus
from kubeloop.local.node.client import ApiError, NodeClient, resource_path
from kubeloop.local.node.containerenv import (
    LOOPBACK,
    ContainerConfigError,
    EnvSources,
    command_line,
    container_env,
)
from kubeloop.local.node.containerlogs import container_log_dir
from kubeloop.local.node.images import (
    IMAGE_NOT_RUNNABLE,
    ImageNotRunnable,
    ProgramNotFound,
    entrypoint_of,
    process_argv,
)
from kubeloop.local.node.podstatus import ContainerRecord, PodFailure
from kubeloop.local.node.probes import ProbeContext, ProbeTiming, run_probe
from kubeloop.local.node.runtime import ContainerProcess, start_container_process
from kubeloop.local.node.settings import NodeSettings
from kubeloop.local.node.volumes import (
    Mount,
    VolumeNotSupported,
    container_mounts,
    path_rewriter,
    prepare_volumes,
    volume_env,
)

log = logging.getLogger(__name__)

MAX_RESTART_BACKOFF_SECONDS = 300.0  # the kubelet's cap
CONFIG_RETRY_SECONDS = 1.0
VOLUME_NOT_SUPPORTED = 'VolumeNotSupportedLocally'
SIDECARS_NOT_SUPPORTED = 'SidecarContainersNotSupportedLocally'
STATUS_UNKNOWN = {'exitCode': 137, 'reason': 'ContainerStatusUnknown',
                  'message': 'The container could not be located when the pod was terminated'}


def timestamp(moment: datetime) -> str:
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker shares: the API client, the settings, the node's facts."""

    client: NodeClient
    settings: NodeSettings
    boot_id: str
    allocatable: Mapping[str, str]

    @property
    def logs_root(self) -> Path:
        return self.settings.state_dir / 'logs'

    @property
    def pods_root(self) -> Path:
        return self.settings.state_dir / 'pods'

    def now(self) -> str:
        return timestamp(self.settings.clock.now())


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one run of a container."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


class PodWorker:
    """Runs one pod's containers and keeps its status (see the module docstring)."""

    def __init__(self, node: NodeContext, pod: dict[str, Any]) -> None:
        self.node = node
        self.pod = pod
        meta = pod['metadata']
        self.uid: str = meta['uid']
        self.namespace: str = meta['namespace']
        self.name: str = meta['name']
        spec = pod.get('spec') or {}
        self.restart_policy: str = spec.get('restartPolicy', 'Always')
        self.init_records = [ContainerRecord(c['name'], c.get('image', ''), init=True)
                             for c in spec.get('initContainers') or []]
        self.records = [ContainerRecord(c['name'], c.get('image', '')) for c in spec.get('containers') or []]
        self.failure: PodFailure | None = None
        self.stopping = False
        self.processes: dict[str, ContainerProcess] = {}
        self.start_time = (pod.get('status') or {}).get('startTime') or node.now()
        self.volumes: dict[str, Path] = {}
        self._published: dict[str, Any] | None = None
        self._publish_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._container_tasks: list[asyncio.Task[None]] = []

    # Identity and paths.

    @property
    def pod_dir(self) -> Path:
        return self.node.pods_root / self.uid

    def log_dir(self, container: str) -> Path:
        return container_log_dir(self.node.logs_root, self.namespace, self.name, self.uid, container)

    def record(self, name: str) -> ContainerRecord | None:
        return next((r for r in [*self.init_records, *self.records] if r.name == name), None)

    def is_running(self, container: str, restart_count: int) -> bool:
        """Whether that run of the container may still write output (log followers wait for it)."""
        record = self.record(container)
        process = self.processes.get(container)
        return (record is not None and record.restart_count == restart_count and process is not None
                and process.exit_code is None)

    # Lifecycle.

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f'pod {self.namespace}/{self.name}')

    async def _run(self) -> None:
        try:
            if self._restore_after_node_restart():
                await self.publish()
                if podstatus.pod_phase(self.restart_policy, self.init_records, self.records) in podstatus.TERMINAL_PHASES:
                    return
            await self.publish()
            if not await self._prepare():
                return
            if not await self._run_init_containers():
                return
            containers = (self.pod.get('spec') or {}).get('containers') or []
            self._container_tasks = [asyncio.create_task(self._run_container(c, self.record_of(c)))
                                     for c in containers]
            await asyncio.gather(*self._container_tasks)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception('pod %s/%s: the node failed to run it', self.namespace, self.name)
            self.failure = PodFailure('NodeError', 'the local node failed to run this pod; see its log')
            await self.publish()

    def record_of(self, container: Mapping[str, Any]) -> ContainerRecord:
        record = self.record(container['name'])
        assert record is not None
        return record

    def _restore_after_node_restart(self) -> bool:
        """Containers a previous node process ran are gone: report them as lost (kubelet's
        ContainerStatusUnknown) and let restartPolicy decide, as after a node reboot."""
        status = self.pod.get('status') or {}
        previous = [*(status.get('initContainerStatuses') or []), *(status.get('containerStatuses') or [])]
        if not any(s.get('containerID') for s in previous):
            return False
        for saved in previous:
            record = self.record(saved.get('name', ''))
            if record is None:
                continue
            record.restart_count = int(saved.get('restartCount', 0))
            terminated = (saved.get('state') or {}).get('terminated')
            lost = {**STATUS_UNKNOWN, 'finishedAt': self.node.now()}
            record.last_state = {'terminated': terminated or lost}
            if self.restart_policy == 'Never':
                record.state = {'terminated': terminated or lost}
            else:
                record.restart_count += 1  # the sandbox is recreated: everything runs again
        return True

    async def _prepare(self) -> bool:
        """Volumes and images; False when the pod has failed for good."""
        spec = self.pod.get('spec') or {}
        sidecars = [c['name'] for c in spec.get('initContainers') or [] if c.get('restartPolicy') == 'Always']
        if sidecars:
            await self.fail(PodFailure(SIDECARS_NOT_SUPPORTED, f'init container(s) {", ".join(sidecars)} have '
                                       'restartPolicy Always (sidecars), which the local node does not run'))
            return False
        if not await self._fail_unrunnable_images(spec):
            return False
        delay = CONFIG_RETRY_SECONDS
        while True:
            try:
                lookups = await self._lookups()
                self.volumes = prepare_volumes(self.pod, self.pod_dir, lookups.secrets, lookups.config_maps)
                return True
            except VolumeNotSupported as exc:
                await self.fail(PodFailure(VOLUME_NOT_SUPPORTED, str(exc)))
                return False
            except ContainerConfigError as exc:  # a missing ConfigMap/Secret volume: kubelet retries the mount
                for record in [*self.init_records, *self.records]:
                    record.state = {'waiting': {'reason': podstatus.CONTAINER_CREATING, 'message': str(exc)}}
                await self.publish()
                await self.node.settings.clock.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _fail_unrunnable_images(self, spec: Mapping[str, Any]) -> bool:
        problems = {}
        for container in [*(spec.get('initContainers') or []), *(spec.get('containers') or [])]:
            try:
                entrypoint_of(container.get('image', ''), self.node.settings.image_entrypoints)
            except ImageNotRunnable as exc:
                problems[container['name']] = str(exc)
        if not problems:
            return True
        now = self.node.now()
        for name, message in problems.items():
            record = self.record(name)
            assert record is not None
            record.state = {'terminated': {'exitCode': podstatus.START_ERROR_EXIT_CODE, 'reason': IMAGE_NOT_RUNNABLE,
                                           'message': message, 'startedAt': None, 'finishedAt': now}}
        await self.fail(PodFailure(IMAGE_NOT_RUNNABLE, next(iter(problems.values()))))
        return False

    async def fail(self, failure: PodFailure) -> None:
        self.failure = failure
        log.warning('pod %s/%s failed: %s: %s', self.namespace, self.name, failure.reason, failure.message)
        await self.publish()

    async def _run_init_containers(self) -> bool:
        for container in (self.pod.get('spec') or {}).get('initContainers') or []:
            record = self.record_of(container)
            if record.succeeded:
                continue
            for later in self.records:
                later.state = {'waiting': {'reason': podstatus.POD_INITIALIZING}}
            await self._run_container(container, record)
            if not record.succeeded:
                return False
        return True

    # One container: start, supervise, restart by policy.

    async def _run_container(self, container: Mapping[str, Any], record: ContainerRecord) -> None:
        restarts = 0
        while not self.stopping:
            if record.terminated is not None:
                if not self._should_restart(record, container):
                    return
                record.last_state = {'terminated': record.terminated}
                if restarts:  # the kubelet restarts at once the first time, then backs off
                    await self._back_off(record, self._back_off_seconds(restarts))
                    if self.stopping:
                        return
                restarts += 1
                record.restart_count += 1
            launch = await self._launch_or_wait(container, record)
            if launch is not None:
                await self._run_once(container, record, launch)

    def _back_off_seconds(self, restarts: int) -> float:
        base = self.node.settings.container_restart_backoff_seconds
        return float(min(base * 2 ** (restarts - 1), MAX_RESTART_BACKOFF_SECONDS))

    def _should_restart(self, record: ContainerRecord, container: Mapping[str, Any]) -> bool:
        terminated = record.terminated or {}
        if terminated.get('reason') == IMAGE_NOT_RUNNABLE:
            return False
        if record.init:
            return self.restart_policy != 'Never' and terminated.get('exitCode') != 0
        if self.restart_policy == 'Always':
            return True
        return self.restart_policy == 'OnFailure' and terminated.get('exitCode') != 0

    async def _back_off(self, record: ContainerRecord, delay: float) -> None:
        """CrashLoopBackOff: wait before the next run; the last run stays as lastState."""
        record.state = {'waiting': {
            'reason': podstatus.CRASH_LOOP_BACK_OFF,
            'message': f'back-off {delay:g}s restarting failed container={record.name} '
                       f'pod={self.name}_{self.namespace}({self.uid})'}}
        await self.publish()
        await self.node.settings.clock.sleep(delay)

    async def _launch_or_wait(self, container: Mapping[str, Any], record: ContainerRecord) -> Launch | None:
        """The container's command line and env, or None after reporting why it cannot start yet."""
        try:
            return await self._launch(container)
        except ContainerConfigError as exc:
            record.state = {'waiting': {'reason': podstatus.CREATE_CONTAINER_CONFIG_ERROR, 'message': str(exc)}}
            await self.publish()
            await self.node.settings.clock.sleep(CONFIG_RETRY_SECONDS)
            return None
        except ProgramNotFound as exc:
            now = self.node.now()
            record.state = {'terminated': {'exitCode': podstatus.START_ERROR_EXIT_CODE,
                                           'reason': podstatus.START_ERROR, 'message': str(exc),
                                           'startedAt': None, 'finishedAt': now}}
            await self.publish()
            return None

    async def _run_once(self, container: Mapping[str, Any], record: ContainerRecord, launch: Launch) -> None:
        log_path = self.log_dir(record.name) / f'{record.restart_count}.log'
        try:
            process = await start_container_process(launch.argv, launch.env, launch.cwd, log_path,
                                                    self.node.settings.clock.now, self.node.settings.state_dir)
        except OSError as exc:
            record.state = {'terminated': {'exitCode': podstatus.START_ERROR_EXIT_CODE,
                                           'reason': podstatus.START_ERROR, 'message': str(exc),
                                           'startedAt': None, 'finishedAt': self.node.now()}}
            await self.publish()
            return
        self.processes[record.name] = process
        started_at = self.node.now()
        record.container_id = f'kubeloop://{self.node.boot_id}-{process.pid}'
        record.state = {'running': {'startedAt': started_at}}
        record.started = not container.get('startupProbe')
        record.ready = record.started and not container.get('readinessProbe') and not record.init
        await self.publish()
        probes = asyncio.create_task(self._probe(container, record, process, launch))
        try:
            exit_code = await process.wait()
        finally:
            probes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probes
        record.ready = record.init and exit_code == 0  # a completed init container counts as ready
        record.state = {'terminated': {
            'exitCode': exit_code, 'reason': 'Completed' if exit_code == 0 else 'Error',
            'startedAt': started_at, 'finishedAt': self.node.now(), 'containerID': record.container_id}}
        await self.publish()

    async def _launch(self, container: Mapping[str, Any]) -> Launch:
        entrypoint = entrypoint_of(container.get('image', ''), self.node.settings.image_entrypoints)
        lookups = await self._lookups(container)
        env = container_env(self.pod, container, EnvSources(lookups.secrets, lookups.config_maps,
                                                            self.node.settings.node_name, self.node.allocatable))
        env.update(localnet.rendezvous_overrides(self.pod, env))
        command, args = command_line(container, env)
        mounts = container_mounts(container, self.volumes)
        env, command, args = await self._rewritten(env, command, args, mounts)
        path = self._base_env()['PATH']
        argv = process_argv(entrypoint, command, args, env.get('PATH', path))
        return Launch(argv, {**self._base_env(), **volume_env(mounts), **env}, self._working_dir(container, mounts))

    async def _rewritten(self, env: dict[str, str], command: list[str] | None, args: list[str] | None,
                         mounts: list[Mount]) -> tuple[dict[str, str], list[str] | None, list[str] | None]:
        """Env values and arguments with cluster names -> 127.0.0.1 and mount paths -> volume dirs."""
        texts = [*env.values(), *(command or []), *(args or [])]
        services = await self._existing_services(localnet.service_candidates(texts, self.namespace))
        rewrite_paths = path_rewriter(mounts)

        def rewrite(text: str) -> str:
            return rewrite_paths(localnet.rewrite_cluster_names(text, self.namespace, services))

        return ({name: rewrite(value) for name, value in env.items()},
                [rewrite(part) for part in command] if command is not None else None,
                [rewrite(part) for part in args] if args is not None else None)

    def _base_env(self) -> dict[str, str]:
        """What a container's environment holds besides its spec: no host variables leak in."""
        spec = self.pod.get('spec') or {}
        venv_bin = str(Path(sys.executable).parent)
        return {
            'PATH': f'{venv_bin}{os.pathsep}{os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}',
            'HOME': str(self._pod_subdir('home')),
            'TMPDIR': str(self._pod_subdir('tmp')),
            'HOSTNAME': spec.get('hostname') or self.name,
            'LANG': os.environ.get('LANG', 'C.UTF-8'),
            # Containers share this machine's network here (no network namespace per pod), so
            # kubeloop's own servers bind the loopback only (they bind 0.0.0.0 in a real pod).
            'KUBELOOP_BIND_ADDRESS': LOOPBACK,
        }

    def _working_dir(self, container: Mapping[str, Any], mounts: list[Mount]) -> Path:
        """`workingDir` under a mount is that volume's directory; any other path lives in the pod's
        own `rootfs/`; no workingDir: the pod's `work/` directory."""
        working_dir = container.get('workingDir')
        if not working_dir:
            return self._pod_subdir('work')
        rewritten = path_rewriter(mounts)(str(working_dir))
        target = Path(rewritten) if rewritten != working_dir else self._pod_subdir('rootfs') / working_dir.lstrip('/')
        target.mkdir(parents=True, exist_ok=True)
        return target

    def _pod_subdir(self, name: str) -> Path:
        directory = self.pod_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    # Reading Secrets, ConfigMaps and Services from the API server.

    async def _lookups(self, container: Mapping[str, Any] | None = None) -> ObjectLookups:
        spec = self.pod.get('spec') or {}
        names = referenced_objects(spec, container)
        secrets = {name: await self._get('secrets', name) for name in names['secrets']}
        config_maps = {name: await self._get('configmaps', name) for name in names['configmaps']}
        return ObjectLookups(secrets.get, config_maps.get)

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        return await self.node.client.get(resource_path('v1', plural, self.namespace, name))

    async def _existing_services(self, candidates: set[localnet.ServiceKey]) -> set[localnet.ServiceKey]:
        existing = set()
        for namespace, name in candidates:
            with contextlib.suppress(ApiError):
                if await self.node.client.get(resource_path('v1', 'services', namespace, name)) is not None:
                    existing.add((namespace, name))
        return existing

    # Probes.

    async def _probe(self, container: Mapping[str, Any], record: ContainerRecord, process: ContainerProcess,
                     launch: Launch) -> None:
        context = ProbeContext(launch.env, launch.cwd)
        startup = container.get('startupProbe')
        if startup and not await self._probe_until_started(startup, container, record, process, context):
            return
        loops = []
        if container.get('readinessProbe'):
            loops.append(self._probe_readiness(container['readinessProbe'], container, record, context))
        if container.get('livenessProbe'):
            loops.append(self._probe_liveness(container['livenessProbe'], container, process, context))
        await asyncio.gather(*loops)

    async def _probe_until_started(self, probe: Mapping[str, Any], container: Mapping[str, Any],
                                   record: ContainerRecord, process: ContainerProcess, context: ProbeContext) -> bool:
        async def on_result(success: bool, successes: int, failures: int) -> bool:
            timing = ProbeTiming.of(probe)
            if success and successes >= timing.success_threshold:
                record.started = True
                record.ready = not container.get('readinessProbe')
                await self.publish()
                return True
            if failures >= timing.failure_threshold:
                await self._kill_unhealthy(process, probe)
                return True
            return False

        await self._probe_loop(probe, container, context, on_result)
        return record.started

    async def _probe_readiness(self, probe: Mapping[str, Any], container: Mapping[str, Any],
                               record: ContainerRecord, context: ProbeContext) -> None:
        timing = ProbeTiming.of(probe)

        async def on_result(success: bool, successes: int, failures: int) -> bool:
            ready = (record.ready or successes >= timing.success_threshold) and failures < timing.failure_threshold
            if ready != record.ready:
                record.ready = ready
                await self.publish()
            return False

        await self._probe_loop(probe, container, context, on_result)

    async def _probe_liveness(self, probe: Mapping[str, Any], container: Mapping[str, Any],
                              process: ContainerProcess, context: ProbeContext) -> None:
        timing = ProbeTiming.of(probe)

        async def on_result(success: bool, successes: int, failures: int) -> bool:
            if failures >= timing.failure_threshold:
                await self._kill_unhealthy(process, probe)
                return True
            return False

        await self._probe_loop(probe, container, context, on_result)

    async def _probe_loop(self, probe: Mapping[str, Any], container: Mapping[str, Any], context: ProbeContext,
                          on_result: Callable[[bool, int, int], Awaitable[bool]]) -> None:
        """Run `probe` every period; `on_result(success, successes, failures)` returns True to stop."""
        timing = ProbeTiming.of(probe)
        clock = self.node.settings.clock
        await clock.sleep(timing.initial_delay)
        successes = failures = 0
        while True:
            result = await run_probe(probe, container, context)
            successes, failures = (successes + 1, 0) if result.success else (0, failures + 1)
            if not result.success:
                log.debug('pod %s/%s container %s: probe failed: %s', self.namespace, self.name,
                          container['name'], result.message)
            if await on_result(result.success, successes, failures):
                return
            await clock.sleep(timing.period)

    async def _kill_unhealthy(self, process: ContainerProcess, probe: Mapping[str, Any]) -> None:
        grace = probe.get('terminationGracePeriodSeconds')
        await process.stop(float(grace if grace is not None else self.grace_seconds()))

    # Stopping.

    def grace_seconds(self) -> float:
        return float((self.pod.get('spec') or {}).get('terminationGracePeriodSeconds', 30))

    async def terminate(self, grace_seconds: float, failure: PodFailure | None = None, *,
                        write_status: bool = True) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL) and end the pod in a terminal phase."""
        already_ended = self.phase in podstatus.TERMINAL_PHASES and not any(
            process.exit_code is None for process in self.processes.values())
        self.stopping = True
        if already_ended:
            return  # a finished pod keeps the outcome it had
        if self._task is not None:
            self._task.cancel()
        for task in self._container_tasks:
            task.cancel()
        wall_grace = grace_seconds / self.node.settings.clock.speed
        stopping = [process.stop(wall_grace) for process in self.processes.values() if process.exit_code is None]
        await asyncio.gather(*stopping, return_exceptions=True)
        for task in [*([self._task] if self._task else []), *self._container_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._record_terminated(failure)
        if write_status:
            await self.publish()

    def _record_terminated(self, failure: PodFailure | None) -> None:
        """After a stop, every container is terminated: the pod is terminal whatever its policy."""
        now = self.node.now()
        self.restart_policy = 'Never'  # nothing restarts any more; the phase follows from the exits
        if failure is not None:
            self.failure = failure
        for record in [*self.init_records, *self.records]:
            record.ready = False
            if record.terminated is not None:
                continue
            process = self.processes.get(record.name)
            if record.running and process is not None and process.exit_code is not None:
                record.state = {'terminated': {
                    'exitCode': process.exit_code, 'reason': 'Completed' if process.exit_code == 0 else 'Error',
                    'startedAt': record.state['running']['startedAt'], 'finishedAt': now,
                    'containerID': record.container_id}}
            else:
                record.state = {'terminated': {**STATUS_UNKNOWN, 'finishedAt': now}}

    # Status.

    async def publish(self) -> None:
        """Write the pod's status if it changed since the last write."""
        async with self._publish_lock:
            # Transition times continue from what this worker wrote, not from an older watch event.
            current = {**self.pod, 'status': self._published or self.pod.get('status') or {}}
            status = podstatus.pod_status(current, self.init_records, self.records, start_time=self.start_time,
                                          now=self.node.now(), failure=self.failure)
            if status == self._published:
                return
            path = resource_path('v1', 'pods', self.namespace, self.name)
            for attempt in range(3):  # the API server may be restarting: try again shortly
                try:
                    written = await self.node.client.patch_status(path, status)
                    break
                except ApiError as exc:
                    log.warning('pod %s/%s: status not written: %s', self.namespace, self.name, exc)
                    return
                except (aiohttp.ClientError, OSError) as exc:
                    log.warning('pod %s/%s: status not written (%s)', self.namespace, self.name, exc)
                    if attempt == 2:
                        return
                    await asyncio.sleep(0.5)
            self._published = status
            if written is not None:
                self.pod = {**self.pod, 'status': written.get('status', status)}

    @property
    def phase(self) -> str:
        return podstatus.pod_phase(self.restart_policy, self.init_records, self.records, self.failure)


@dataclass(frozen=True)
class ObjectLookups:
    secrets: Callable[[str], Mapping[str, Any] | None]
    config_maps: Callable[[str], Mapping[str, Any] | None]


def referenced_objects(spec: Mapping[str, Any], container: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """Secret and ConfigMap names that env (of `container`) or the pod's volumes refer to."""
    names: dict[str, set[str]] = {'secrets': set(), 'configmaps': set()}
    if container is None:
        for volume in spec.get('volumes') or []:
            if volume.get('secret'):
                names['secrets'].add(volume['secret'].get('secretName', ''))
            if volume.get('configMap'):
                names['configmaps'].add(volume['configMap'].get('name', ''))
        return names
    for source in container.get('envFrom') or []:
        if source.get('secretRef'):
            names['secrets'].add(source['secretRef']['name'])
        if source.get('configMapRef'):
            names['configmaps'].add(source['configMapRef']['name'])
    for entry in container.get('env') or []:
        value_from = entry.get('valueFrom') or {}
        if value_from.get('secretKeyRef'):
            names['secrets'].add(value_from['secretKeyRef']['name'])
        if value_from.get('configMapKeyRef'):
            names['configmaps'].add(value_from['configMapKeyRef']['name'])
    return names
