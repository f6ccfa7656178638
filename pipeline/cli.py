"""``bnat``: the command-line entry point.

    bnat validate [PARAMS]     check a params file against the schema (one line per problem)
    bnat stages [DIR]          list the DVC stages in the order a flow runs them
    bnat flow [DIR]            run the Prefect ``reproduce`` flow once, here (no worker needed)
    bnat mlflow-ui [--host H]  the MLflow UI over the project's store, on 127.0.0.1 unless --host says
    bnat mlflow-server [...]   the MLflow server that several machines log to (database backend)
    bnat prune-lock [DIR]      drop dvc.lock's entries of stages no longer in dvc.yaml (DVC keeps them)
    bnat mlflow-sync [DIR]     make the runs the workspace's outs name the current ones (after a DVC
                               restore), and repoint a moved project's store at its new folder
    bnat sweep -m M.. -s S..   methods x seeds as experiments on the gpu workers (or --local), then
                               mean ± std over seeds per method
    bnat study --seeds S..     the project at several seeds on every test image; the claims judged over them
    bnat select-branches SRC DST B..  keep BN branches B.. of a multi-branch model (drop AdvProp's auxiliary BNs)
    bnat exp-show [-m M..]     DVC experiments, one row per experiment and model: clean, AutoAttack, worst case
    bnat plots [DIR]           ``dvc plots show`` as a page that draws offline (Vega inline, no CDN)
"""

from __future__ import annotations

import argparse
import sys


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every argument's default in its help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def _command(sub, name: str, purpose: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line purpose heads both ``bnat --help`` and its own ``--help``."""
    return sub.add_parser(name, help=purpose, description=purpose[0].upper() + purpose[1:] + ".",
                          formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnat", description="BN in adversarial training: pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = _command(sub, "validate", "check a params file against the schema, with one line naming the first bad key")
    v.add_argument("params", nargs="?", default="params.yaml", help="the params file to check")
    st = _command(sub, "stages", "list the DVC stages in the order a flow runs them")
    st.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.yaml")
    f = _command(sub, "flow", "run the Prefect reproduce flow once in this process (no worker needed)")
    f.add_argument("project_dir", nargs="?", default=".",
                   help="the project to reproduce: the folder holding dvc.yaml and params.yaml")
    f.add_argument("--workers", type=int, default=1,
                   help="run independent stages side by side in this many worker checkouts sharing the DVC "
                        "cache (1: one after another, here)")
    f.add_argument("--items-at-once", type=int, default=None,
                   help="items each worker checkout's stage runs at once (default: the cores shared among the "
                        "checkouts; results do not depend on it)")
    u = _command(sub, "mlflow-ui", "serve the MLflow UI over the project's tracking store")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (loopback: this machine only)")
    u.add_argument("--port", type=int, default=5000, help="port to serve on")
    ms = _command(sub, "mlflow-server", "run an MLflow tracking server with a database backend for several machines")
    ms.add_argument("--backend-store-uri", default="sqlite:///mlflow-server.db",
                    help="the run database (sqlite:///FILE, postgresql://..., mysql://...)")
    ms.add_argument("--artifacts-destination", default="./mlartifacts-server",
                    help="where logged files go (a folder, s3://..., ...); clients upload through the server")
    ms.add_argument("--host", default="127.0.0.1", help="address to bind (loopback: this machine only; "
                    "0.0.0.0 opts in to other machines)")
    ms.add_argument("--port", type=int, default=5000, help="port to serve on")
    pr = _command(sub, "prune-lock", "drop dvc.lock's entries of stages no longer in dvc.yaml (DVC never removes them)")
    pr.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.yaml")
    sy = _command(sub, "mlflow-sync", "make the MLflow runs that the workspace's outs name the current run of "
                  "each stage (after DVC restored older results), and repoint a moved project's store")
    sy.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.lock")
    sb = _command(sub, "select-branches", "keep some BN branches of a saved multi-branch model and drop the rest "
                  "(e.g. AdvProp without its auxiliary BNs)")
    sb.add_argument("src", help="the saved model (models/GROUP/NAME/model.pt)")
    sb.add_argument("dst", help="where to write the converted model; it loads by path alone")
    sb.add_argument("branches", nargs="+", type=int, help="the branches to keep, in order (0: the main BN)")
    es = _command(sub, "exp-show", "list DVC experiments one row per experiment and evaluated model (clean, "
                  "AutoAttack or the screen tier's APGD, worst case, in percent)")
    es.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.yaml")
    es.add_argument("-m", "--models", nargs="+", default=None, help="only these models or views (default: all)")
    pl = _command(sub, "plots", "write dvc plots show's page with the Vega libraries inline, so that it draws offline")
    pl.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.yaml")
    pl.add_argument("-o", "--out", default="dvc_plots", help="the folder for index.html, inside the project")
    sd = _command(sub, "study", "build the project at several training seeds on every test image and judge the "
                  "papers' claims over them (studies/NAME/claims.md)")
    sd.add_argument("--seeds", nargs="+", type=int, required=True, help="the training seeds (two or more)")
    sd.add_argument("--name", default=None, help="the study's folder under studies/ (default: seeds-S1-S2-...)")
    sd.add_argument("project_dir", nargs="?", default=".", help="the project: the folder holding dvc.yaml")
    sw = _command(sub, "sweep", "run methods x seeds as experiments from the committed params.yaml (in a checkout "
                  "of their own: the workspace is not touched), then report mean ± std over seeds per method")
    sw.add_argument("-m", "--methods", nargs="+", required=True,
                    help="models or views of the evaluation plans (evaluations) to compare")
    sw.add_argument("-s", "--seeds", nargs="+", type=int, required=True, help="the seeds each method runs with")
    sw.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a params.yaml override for every experiment (YAML value), repeatable")
    sw.add_argument("--local", action="store_true", help="run the experiments here, one after another, "
                    "instead of through the experiment deployment")
    sw.add_argument("--deployment", default=None,
                    help="the Prefect experiment deployment to submit to, when not the default experiment/gpu")
    return parser


def _validate(args) -> int:
    from pipeline.config import load_params

    params = load_params(args.params)
    print(f"{args.params}: valid ({len(params.trained)} models in {len(params.groups)} groups, "
          f"{len(params.targets)} models and views evaluated)")
    return 0


def _stages(args) -> int:
    from pipeline.flows import ordered_stages

    print("\n".join(ordered_stages(args.project_dir)))
    return 0


def _mlflow_ui(args) -> int:
    import os

    from pipeline.tracking import experiment_page, project_experiment, tracking_uri

    print(f"open {experiment_page(f'http://{args.host}:{args.port}', project_experiment())} "
          "(the project's runs and models)", flush=True)
    cmd = ["mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", args.host, "--port", str(args.port)]
    os.execvp(cmd[0], cmd)


def _mlflow_server(args) -> int:
    import os

    cmd = ["mlflow", "server", "--backend-store-uri", args.backend_store_uri, "--artifacts-destination",
           args.artifacts_destination, "--host", args.host, "--port", str(args.port)]
    os.execvp(cmd[0], cmd)


def _mlflow_sync(args) -> int:
    from pipeline.flows import sync_runs

    done = sync_runs(args.project_dir)
    print(f"{len(done['current'])} stages point at their current run; {len(done['superseded'])} older runs "
          f"superseded" + (f"; not in this store: {', '.join(done['missing'])}" if done["missing"] else ""))
    return 0


def _prune_lock(args) -> int:
    from pipeline.lockfile import prune

    gone = prune(args.project_dir)
    print(f"dvc.lock: dropped {len(gone)} entries of stages no longer in dvc.yaml" if gone
          else "dvc.lock: every entry is a stage of dvc.yaml")
    return 0


def _exp_show(args) -> int:
    from pipeline.exp_table import show as exp_show

    print(exp_show(args.project_dir, args.models))
    return 0


def _plots(args) -> int:
    from pipeline.plots_page import show

    print(f"wrote {show(args.project_dir, args.out)} (opens without the internet)")
    return 0


def _study(args) -> int:
    from pipeline.study import run as run_study

    path = run_study(args.project_dir, args.seeds, args.name)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def _sweep(args) -> int:
    from pipeline.config import ConfigError, read_yaml
    from pipeline.flows import EXPERIMENT_DEPLOYMENT, check_deployment, check_sweep, summary_markdown, sweep

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = read_yaml(value, f"--set {key}")
    check_sweep(".", args.methods, args.seeds, overrides or None)  # before any server starts
    deployment = None if args.local else (args.deployment or EXPERIMENT_DEPLOYMENT)
    if deployment:
        check_deployment(deployment)
    summary = sweep(args.methods, args.seeds, overrides or None, deployment=deployment)
    print(summary_markdown(summary), end="")
    return 0


def _select_branches(args) -> int:
    from pipeline.layout import dvc_use
    from pipeline.spec import convert_saved

    if use := dvc_use(args.dst):
        raise ValueError(f"{args.dst}: {use}; write the converted model outside the pipeline's folders (e.g. main.pt)")
    spec = convert_saved(args.src, args.dst, {"kind": "select", "branches": args.branches})
    print(f"{args.dst}: branches {args.branches} of {args.src}; deploys as {spec['deployment']}")
    return 0


def _flow(args) -> int:
    from pipeline.flows import reproduce

    reproduce(args.project_dir, workers=args.workers, items_at_once=args.items_at_once)
    return 0


COMMANDS = {"validate": _validate, "stages": _stages, "flow": _flow, "mlflow-ui": _mlflow_ui,
            "mlflow-server": _mlflow_server, "mlflow-sync": _mlflow_sync, "prune-lock": _prune_lock,
            "exp-show": _exp_show, "plots": _plots, "study": _study, "sweep": _sweep,
            "select-branches": _select_branches}


def exit_code(err: Exception) -> int | None:
    """How ``bnat`` ends on ``err``, said in one line: 2 for bad input (params, data, a checkpoint,
    a file it would overwrite), 1 for a DVC command it ran that failed; None for anything else,
    which keeps its traceback (a bug)."""
    from pipeline.config import ConfigError
    from pipeline.data import DataError
    from pipeline.io import CheckpointError, WriteError

    if isinstance(err, (ConfigError, DataError, CheckpointError, WriteError, ValueError)):
        return 2
    if isinstance(err, RuntimeError):
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Exception as err:
        code = exit_code(err)
        if code is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
