"""The `kubeloop` command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from kubeloop import __version__


def _operator(args: argparse.Namespace) -> int:
    from kubeloop import manager
    from kubeloop.core.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"kubeloop operator: {exc}", file=sys.stderr)
        return 2
    overrides = {
        "kubeconfig": args.kubeconfig,
        "namespaces": tuple(args.namespace) if args.namespace else None,
        "metrics_port": args.metrics_port,
        "metrics_address": args.metrics_address,
        "health_port": args.health_port,
        "health_address": args.health_address,
        "peering_name": args.peering,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    manager.run(settings)
    return 0


def _local_apiserver(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from kubeloop.local import apiserver

    return apiserver.main(list(rest))


def _up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubeloop.local import environment

    state_dir = Path(args.state_dir) if args.state_dir else environment.DEFAULT_STATE_DIR
    return environment.up(state_dir, with_samples=args.with_samples)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubeloop.local import demo, environment

    state_dir = Path(args.state_dir) if args.state_dir else environment.DEFAULT_STATE_DIR
    return demo.demo(demo.DemoOptions(state_dir=state_dir, rows=args.rows, epochs=args.epochs,
                                      live_rows=args.live_rows, keep_running=not args.exit))


def _down(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubeloop.local import environment

    return environment.down(Path(args.state_dir) if args.state_dir else environment.DEFAULT_STATE_DIR)


def _local_node(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from kubeloop.local.node import main as node_main

    return node_main.main(list(rest))


def _run_cronjob(args: argparse.Namespace) -> int:
    import asyncio

    from kubeloop.local.node.client import ApiError, NodeClient
    from kubeloop.local.node.cronjobs import create_job_from_cronjob

    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print("kubeloop local run-cronjob: give --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2

    async def run() -> dict:
        async with NodeClient.from_kubeconfig(kubeconfig) as client:
            return await create_job_from_cronjob(client, args.namespace, args.name, args.job_name)

    try:
        job = asyncio.run(run())
    except (LookupError, ApiError) as exc:
        print(f"kubeloop local run-cronjob: {exc}", file=sys.stderr)
        return 1
    print(f"job.batch/{job['metadata']['name']} created")
    return 0


def _store_for(args: argparse.Namespace) -> object:
    """The object store of namespace `args.namespace`, from its object-store Secret in the cluster."""
    from kubeloop.core.kube import KubeClient
    from kubeloop.core.settings import Settings
    from kubeloop.store import ObjectStore, StoreConfig

    settings = Settings.from_env(os.environ)
    client = KubeClient.connect(args.kubeconfig or os.environ.get("KUBECONFIG"))
    try:
        secret = client.get("v1", "Secret", args.namespace, settings.object_store.secret_name)
    finally:
        client.close()
    if secret is None:
        raise SystemExit(f"kubeloop: no Secret {settings.object_store.secret_name!r} in namespace "
                         f"{args.namespace!r}: it holds the object store credentials")
    return ObjectStore(StoreConfig.from_secret(settings.object_store, secret))


def _runs(args: argparse.Namespace) -> int:
    from kubeloop.store import StoreError
    from kubeloop.trainingrun import runs

    store = _store_for(args)
    try:
        if args.runs_command == "list":
            print(runs.format_run_list(runs.list_runs(store, args.namespace)))  # type: ignore[arg-type]
        elif args.runs_command == "show":
            print(runs.show_run(store, args.namespace, args.name))  # type: ignore[arg-type]
        else:
            print(runs.compare_runs(store, args.namespace, args.names, args.png))  # type: ignore[arg-type]
            print(f"learning curves: {args.png}")
    except StoreError as exc:
        print(f"kubeloop runs: {exc}", file=sys.stderr)
        return 1
    return 0


def _models(args: argparse.Namespace) -> int:
    from kubeloop.modelversion import catalog
    from kubeloop.store import StoreError

    store = _store_for(args)
    try:
        if args.models_command == "list":
            print(catalog.format_model_list(catalog.list_models(store, args.namespace)))  # type: ignore[arg-type]
        else:
            print(catalog.show_model(store, args.namespace, args.model))  # type: ignore[arg-type]
    except StoreError as exc:
        print(f"kubeloop models: {exc}", file=sys.stderr)
        return 1
    return 0


def _drift(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubeloop.core.kube import KubeClient
    from kubeloop.driftmonitor import reports
    from kubeloop.store import StoreError

    client = KubeClient.connect(args.kubeconfig or os.environ.get("KUBECONFIG"))
    try:
        monitor = reports.read_monitor(client, args.namespace, args.name)
        if args.drift_command == "show":
            print(reports.format_monitor(monitor))
            return 0
        path = reports.save_report(_store_for(args), monitor,  # type: ignore[arg-type]
                                   Path(args.output) if args.output else reports.default_report_path(args.name))
    except (reports.ReportUnavailable, StoreError) as exc:
        print(f"kubeloop drift {args.drift_command}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"drift report of {args.namespace}/{args.name}: {path}")
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeloop",
        description="Kubernetes-native MLOps: FeatureSet, TrainingRun, ModelVersion, DriftMonitor.",
    )
    parser.add_argument("--version", action="version", version=f"kubeloop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    op = commands.add_parser("operator", help="run the operator (in a cluster, or against a kubeconfig)",
                             description="Run the kubeloop operator. Settings come from KUBELOOP_* "
                                         "environment variables; flags override them.")
    op.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then ~/.kube/config)")
    op.add_argument("--namespace", "-n", action="append",
                    help="watch only this namespace (repeatable; default: cluster-wide)")
    op.add_argument("--metrics-address", help="address of the /metrics endpoint (default 0.0.0.0)")
    op.add_argument("--metrics-port", type=int, help="port of the /metrics endpoint (default 8080)")
    op.add_argument("--health-address", help="address of the /healthz endpoint (default 0.0.0.0)")
    op.add_argument("--health-port", type=int, help="port of the /healthz liveness endpoint (default 8081)")
    op.add_argument("--peering", metavar="NAME",
                    help="use kopf peering NAME for leader hand-over (default: standalone)")
    op.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    op.set_defaults(handler=_operator)

    up = commands.add_parser(
        "up", help="run kubeloop locally: API server, CRDs and operator on 127.0.0.1, until Ctrl-C",
        description="Start the embedded control plane (no Kubernetes or Docker needed) and keep it "
                    "running; prints the KUBECONFIG to export in another shell.")
    up.add_argument("--state-dir", help="where kubeconfig, logs and pids live (default ~/.kubeloop/local, "
                                        "or $KUBELOOP_HOME/local)")
    up.add_argument("--with-samples", action="store_true",
                    help="also apply manifests/samples/ (one resource of each kind) to namespace default")
    up.set_defaults(handler=_up)
    demo = commands.add_parser(
        "demo", help="walk the whole loop locally: features, DDP training, gated serving, drift, retrain, rollout",
        description="Start the embedded cluster and walk kubeloop's loop end to end with generated card "
                    "transactions: FeatureSet → TrainingRun (2 workers) → ModelVersion gated and served → live "
                    "traffic → traffic shifts → DriftMonitor flags it → automatic retrain → the new version is "
                    "gated and rolled out. Prints each step and the kubectl commands to look around; keeps "
                    "running until Ctrl-C unless --exit. A few minutes on 2 cores.")
    demo.add_argument("--state-dir", help="where kubeconfig, logs and data live (default: as `kubeloop up`)")
    demo.add_argument("--rows", type=int, default=20_000, help="training transactions to generate (default 20000)")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    demo.add_argument("--live-rows", type=int, default=1_500,
                      help="requests per live-traffic phase (default 1500; the shifted phase sends twice as many)")
    demo.add_argument("--exit", action="store_true", help="stop everything when the loop has closed")
    demo.set_defaults(handler=_demo)
    down = commands.add_parser("down", help="stop a local environment started by `kubeloop up`")
    down.add_argument("--state-dir", help="the state directory given to `kubeloop up`")
    down.set_defaults(handler=_down)

    runs = commands.add_parser("runs", help="training runs as recorded in the object store (experiment tracking)",
                               description="Read the run records TrainingRuns write: parameters, per-epoch "
                                           "metrics, environment, data and artifact digests.")
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    for action, text in (("list", "every run in the namespace, with its key metric"),
                         ("show", "one run in full"),
                         ("compare", "runs side by side, and their learning curves as a PNG")):
        sub = runs_commands.add_parser(action, help=text)
        sub.add_argument("--namespace", "-n", default="default")
        sub.add_argument("--kubeconfig", help="default: $KUBECONFIG")
        if action == "show":
            sub.add_argument("name", help="the TrainingRun")
        if action == "compare":
            sub.add_argument("names", nargs="+", help="TrainingRuns to compare")
            sub.add_argument("--png", default="learning-curves.png", help="where to write the plot")
        sub.set_defaults(handler=_runs)

    models = commands.add_parser("models", help="the model registry: versions, aliases, lineage",
                                 description="Read the model registry index in the object store: every "
                                             "registered version with its TrainingRun, FeatureSet version, data "
                                             "and artifact digests, metrics and aliases (champion included).")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for action, text in (("list", "every registered model in the namespace, with its champion"),
                         ("show", "every version of one model, with its lineage")):
        sub = models_commands.add_parser(action, help=text)
        sub.add_argument("--namespace", "-n", default="default")
        sub.add_argument("--kubeconfig", help="default: $KUBECONFIG")
        if action == "show":
            sub.add_argument("model", help="the registered model name (ModelVersion spec.model)")
        sub.set_defaults(handler=_models)

    drift = commands.add_parser("drift", help="a DriftMonitor's last check: per-feature table, HTML report",
                                description="Read what a DriftMonitor's last check found.")
    drift_commands = drift.add_subparsers(dest="drift_command", metavar="ACTION", required=True)
    for action, text in (("show", "the last check's figures, one line per feature"),
                         ("report", "save the last check's HTML report (and open it with --open)")):
        sub = drift_commands.add_parser(action, help=text)
        sub.add_argument("name", help="the DriftMonitor")
        sub.add_argument("--namespace", "-n", default="default")
        sub.add_argument("--kubeconfig", help="default: $KUBECONFIG")
        if action == "report":
            sub.add_argument("--output", "-o", help="where to save it (default: NAME-drift-report.html)")
            sub.add_argument("--open", action="store_true", help="open the saved report in a web browser")
        sub.set_defaults(handler=_drift)

    local = commands.add_parser("local", help="pieces of the embedded control plane, run one by one")
    local_commands = local.add_subparsers(dest="local_command", metavar="PIECE")
    local_commands.add_parser(
        "apiserver", add_help=False,
        help="the local Kubernetes API server (see `kubeloop local apiserver --help`)",
    ).set_defaults(raw_handler=_local_apiserver)
    local_commands.add_parser(
        "node", add_help=False,
        help="the local node: kubelet, Job/CronJob/KServe controllers (see `kubeloop local node --help`)",
    ).set_defaults(raw_handler=_local_node)
    run_cronjob = local_commands.add_parser(
        "run-cronjob", help="run a CronJob once now (what `kubectl create job --from=cronjob/NAME` does)",
        description="Create a Job from a CronJob's template now, annotated as a manual run and owned by "
                    "the CronJob. (kubectl's `create job --from` sends protobuf, which the local API "
                    "server does not speak.)")
    run_cronjob.add_argument("name", help="the CronJob")
    run_cronjob.add_argument("--namespace", "-n", default="default")
    run_cronjob.add_argument("--job-name", help="name of the Job (default: <cronjob>-manual-<random>)")
    run_cronjob.add_argument("--kubeconfig", help="default: $KUBECONFIG")
    run_cronjob.set_defaults(handler=_run_cronjob)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "raw_handler", None) is not None:
        sys.exit(args.raw_handler(args, rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if getattr(args, "handler", None) is None:
        parser.print_help()
        sys.exit(2)
    sys.exit(args.handler(args))
