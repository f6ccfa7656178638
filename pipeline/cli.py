"""``bnat``: the command-line entry point.

    bnat validate [PARAMS]     check a params file against the schema (one line per problem)
    bnat stages                list the DVC stages in the order a flow runs them
    bnat flow [DIR]            run the Prefect ``reproduce`` flow once, here (no worker needed)
    bnat mlflow-ui [--host H]  the MLflow UI over the project's store, on 127.0.0.1 unless --host says
    bnat mlflow-server [...]   the MLflow server that several machines log to (database backend)
    bnat sweep -m M.. -s S..   methods x seeds as experiments on the gpu workers (or --local), then
                               mean ± std over seeds per method
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bnat", description="BN in adversarial training: pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate a params file")
    v.add_argument("params", nargs="?", default="params.yaml")
    sub.add_parser("stages", help="list the DVC stages in execution order")
    f = sub.add_parser("flow", help="run the reproduce flow once in this process")
    f.add_argument("project_dir", nargs="?", default=".")
    u = sub.add_parser("mlflow-ui", help="serve the MLflow UI over the project's tracking store")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    u.add_argument("--port", type=int, default=5000)
    ms = sub.add_parser("mlflow-server", help="an MLflow tracking server with a database backend")
    ms.add_argument("--backend-store-uri", default="sqlite:///mlflow-server.db",
                    help="the run database (sqlite:///FILE, postgresql://..., mysql://...)")
    ms.add_argument("--artifacts-destination", default="./mlartifacts-server",
                    help="where logged files go (a folder, s3://..., ...); clients upload through the server")
    ms.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; "
                    "0.0.0.0 opts in to other machines)")
    ms.add_argument("--port", type=int, default=5000)
    sw = sub.add_parser("sweep", help="run a sweep flow: methods x seeds, mean ± std over seeds")
    sw.add_argument("-m", "--methods", nargs="+", required=True, help="models of evaluate.models")
    sw.add_argument("-s", "--seeds", nargs="+", type=int, required=True)
    sw.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a params.yaml override for every experiment (YAML value), repeatable")
    sw.add_argument("--local", action="store_true", help="run the experiments here, one after another, "
                    "instead of through the experiment deployment")
    sw.add_argument("--deployment", default=None, help="the experiment deployment (default experiment/gpu)")
    args = parser.parse_args(argv)

    if args.command == "validate":
        from pipeline.config import ConfigError, load_params

        try:
            params = load_params(args.params)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.params}: valid ({len(params.pretrain)} pretrained models, "
              f"{len(params.evaluate.models)} evaluated)")
        return 0
    if args.command == "stages":
        from pipeline.flows import ordered_stages

        print("\n".join(ordered_stages(".")))
        return 0
    if args.command == "mlflow-ui":
        import os

        from pipeline.tracking import tracking_uri

        cmd = ["mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", args.host, "--port", str(args.port)]
        os.execvp(cmd[0], cmd)
    if args.command == "mlflow-server":
        import os

        cmd = ["mlflow", "server", "--backend-store-uri", args.backend_store_uri, "--artifacts-destination",
               args.artifacts_destination, "--host", args.host, "--port", str(args.port)]
        os.execvp(cmd[0], cmd)
    if args.command == "sweep":
        import yaml

        from pipeline.config import ConfigError
        from pipeline.flows import EXPERIMENT_DEPLOYMENT, check_sweep, summary_markdown, sweep

        overrides = {}
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                print(f"error: --set {item!r}: expected KEY=VALUE", file=sys.stderr)
                return 2
            overrides[key] = yaml.safe_load(value)
        try:
            check_sweep(".", args.methods, args.seeds, overrides or None)  # before any server starts
            summary = sweep(args.methods, args.seeds, overrides or None,
                            deployment=None if args.local else (args.deployment or EXPERIMENT_DEPLOYMENT))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(summary_markdown(summary), end="")
        return 0
    if args.command == "flow":
        from pipeline.flows import reproduce

        reproduce(args.project_dir)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
