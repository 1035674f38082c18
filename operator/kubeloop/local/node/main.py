"""`kubeloop local node`: the local node as a process (kubelet, Job, CronJob, InferenceService controllers).

    kubeloop local node --kubeconfig FILE [--state-dir DIR] [--image REPO=COMMAND ...]
                        [--clock-speed X] [--node-name NAME] [--controllers LIST] [--log-level LEVEL]

(also `python -m kubeloop.local.node.main ...`). It runs the four controllers against the
API server of the kubeconfig until SIGINT or SIGTERM, then stops every pod's processes
(SIGTERM, grace period, SIGKILL) before it exits: nothing is left running.

`--image REPO=COMMAND` maps an image repository (any tag) to the command that plays its
entrypoint, e.g. `--image ghcr.io/acme/train="python -m acme.train"`; repeatable, added to
kubeloop's own images (see settings.DEFAULT_IMAGE_ENTRYPOINTS). `--controllers kubelet` runs
only the kubelet: a second node of the same cluster, whose controllers run elsewhere once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from kubeloop.local.node.client import NodeClient
from kubeloop.local.node.cronjobs import CronJobController
from kubeloop.local.node.inferenceservices import InferenceServiceController
from kubeloop.local.node.jobs import JobController
from kubeloop.local.node.kubelet import KubeletController
from kubeloop.local.node.scraping import ScrapeTargetController
from kubeloop.local.node.settings import DEFAULT_IMAGE_ENTRYPOINTS, Clock, NodeSettings

log = logging.getLogger('kubeloop.local.node')

STOP_TIMEOUT_SECONDS = 120.0  # only against a hang: pods get their own grace periods first


class Controller(Protocol):
    async def run(self) -> None: ...


CONTROLLERS: dict[str, type[Any]] = {
    'kubelet': KubeletController,
    'job': JobController,
    'cronjob': CronJobController,
    'inferenceservice': InferenceServiceController,
    'scrape': ScrapeTargetController,
}


def parse_controllers(text: str) -> list[type[Any]]:
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in CONTROLLERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f'unknown controller(s) {unknown}; choose from {", ".join(CONTROLLERS)}')
    return [CONTROLLERS[name] for name in names]


def parse_image_mapping(text: str) -> tuple[str, tuple[str, ...]]:
    """`REPO=COMMAND` (COMMAND split as a shell would) -> (repository, entrypoint)."""
    repository, sep, command = text.partition('=')
    if not sep or not repository or not command.strip():
        raise argparse.ArgumentTypeError(f'expected REPO=COMMAND, got {text!r}')
    return repository.strip(), tuple(shlex.split(command))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='kubeloop local node',
        description="Run the local node: kubelet (containers of mapped images as local processes), "
                    "Job, CronJob and KServe InferenceService controllers, against a local API server.")
    parser.add_argument('--kubeconfig', required=True, type=Path, help='kubeconfig of the API server')
    parser.add_argument('--state-dir', type=Path, default=NodeSettings.state_dir,
                        help='pod directories, volumes and container logs (default: %(default)s)')
    parser.add_argument('--image', action='append', default=[], type=parse_image_mapping, metavar='REPO=COMMAND',
                        help='run images of repository REPO (any tag) with COMMAND as entrypoint (repeatable)')
    parser.add_argument('--clock-speed', type=float, default=1.0,
                        help='node time runs this many times faster than wall time (default 1)')
    parser.add_argument('--prometheus-targets-dir', type=Path, default=None,
                        help="the local Prometheus' file_sd folder: pods annotated prometheus.io/scrape are "
                             "written there (default: no scraping)")
    parser.add_argument('--node-name', default=NodeSettings.node_name, help='the Node name (default: %(default)s)')
    parser.add_argument('--controllers', type=parse_controllers, default=list(CONTROLLERS.values()),
                        metavar='LIST', help=f'comma-separated controllers to run (default: all: {",".join(CONTROLLERS)})')
    parser.add_argument('--log-level', default='INFO', help='Python logging level (default: INFO)')
    return parser


def settings_from(args: argparse.Namespace) -> NodeSettings:
    if args.clock_speed <= 0:
        raise SystemExit('kubeloop local node: --clock-speed must be positive')
    images = {**DEFAULT_IMAGE_ENTRYPOINTS, **dict(args.image)}
    return NodeSettings(node_name=args.node_name, state_dir=args.state_dir.resolve(), image_entrypoints=images,
                        clock=Clock(speed=args.clock_speed),
                        prometheus_targets_dir=args.prometheus_targets_dir.resolve() if args.prometheus_targets_dir
                        else None)


async def run_node(client: NodeClient, settings: NodeSettings, stop: asyncio.Event,
                   controllers: Sequence[type[Any]] = tuple(CONTROLLERS.values())) -> None:
    """Run every controller until `stop` is set (or one of them fails), then stop them all."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for controller_class in controllers:
        controller: Controller = controller_class(client, settings)
        tasks.append(asyncio.create_task(controller.run(), name=controller_class.__name__))
        log.info('started %s', controller_class.__name__)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            log.error('%s failed; stopping the node', task.get_name(), exc_info=task.exception())
    stopper.cancel()
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.error('%s failed while stopping: %s', task.get_name(), result)
        log.info('stopped %s', task.get_name())


async def _main(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with NodeClient.from_kubeconfig(args.kubeconfig) as client:
        log.info('local node %s: API server %s, state in %s', settings.node_name, client.base_url,
                 settings.state_dir)
        await run_node(client, settings, stop, args.controllers)
    log.info('local node stopped')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `kubeloop local node` command; returns the exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 130


if __name__ == '__main__':
    sys.exit(main())
