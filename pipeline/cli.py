"""``bnat``: the command-line entry point.

    bnat validate [PARAMS]     check a params file against the schema (one line per problem)
    bnat stages                list the DVC stages in the order a flow runs them
    bnat flow [DIR]            run the Prefect ``reproduce`` flow once, here (no worker needed)
    bnat mlflow-ui [--host H]  the MLflow UI over the project's store, on 127.0.0.1 unless --host says
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
    if args.command == "flow":
        from pipeline.flows import reproduce

        reproduce(args.project_dir)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
