"""The benchmarks: the pipeline against the physical limit and against peers. Writes BENCHMARKS.md.

    python bench/run.py [--quick] [--only SECTION ...] [--update] [--from-empty] [--params FILE] [--out FILE]

Sections: train (step throughput against (k+1) forward+backward), flops (achieved GFLOP/s
against this machine's SGEMM), pgd (the pipeline's PGD against torchattacks.PGD), cascade (the
evaluation suite with and without early exit and cascade), autoattack (the official AutoAttack
run alone against the pipeline's held deployment: time, cost per robust image, identical
examples), evaltime (where one model's evaluation spends its time: each attack, AutoAttack's
components, a forward pass against SGEMM), options (channels_last, compile, amp, data on the
device), dvc (DVC's own cost per stage against the number of stages, on trivial stages), dag (a
`dvc repro` from empty of --params in a fresh copy: its wall time against the stages' own work,
where the rest goes, how busy the cores were, the most expensive stages, a no-op repro, and a
stage that does no work; runs with `--from-empty` or `--only dag`, about 15 minutes for the
default params on 2 cores), pipeline (dvc repro and Prefect overhead on a built copy: the dag
section's with `--from-empty`, else the tests' tiny cut built here). Every figure is the median of
several runs, and every comparison is a ratio of figures measured in the same run, interleaved.
`--quick` runs tiny sizes once or twice (for tests). `--update` refreshes the sections run in an
existing --out and keeps the others; each section's last line says when and at which commit it
was measured.

The modules: harness.py (sizes, timing, the report, the data and models every section measures,
built here), kernels.py (train, flops, pgd, cascade, cores, options), dag.py (dag, dvc,
pipeline), evaltime.py (evaltime), item_process.py (one item of the cores section), cascade.py (the
suite both ways).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # pipeline, tests; bench's modules

import torch  # noqa: E402

import dag  # noqa: E402
import evaltime  # noqa: E402
import kernels  # noqa: E402
from harness import FULL, QUICK, ROOT, Bench, Section, provenance, write_report  # noqa: E402

SECTIONS = ("dag", "dvc", "train", "cores", "flops", "pgd", "cascade", "autoattack", "evaltime", "options",
            "pipeline")  # dag first: the others use its models

# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Section]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one or two runs (tests)")
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    ap.add_argument("--from-empty", action="store_true",
                    help="also run the dag section: `dvc repro` from empty of --params (~40 min for the default)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="build the pipeline's copy here and keep it (default: a temporary folder)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--update", action="store_true",
                    help="replace only the sections run in --out, keeping the others (with --only)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    argv = list(sys.argv[1:] if argv is None else argv)
    out, params_file = args.out.resolve(), args.params.resolve()
    cwd = os.getcwd()
    os.chdir(ROOT)  # a dataset that downloads goes to the project's data/raw, as the fetch stage's
    try:
        return _run(args, argv, out, params_file)
    finally:
        os.chdir(cwd)


def _run(args, argv: list[str], out: Path, params_file: Path) -> list[Section]:
    sizes = QUICK if args.quick else FULL
    b = Bench(sizes, params_file)
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    runners = {"train": kernels.section_train, "cores": kernels.section_cores, "flops": kernels.section_flops,
               "pgd": kernels.section_pgd, "cascade": kernels.section_cascade,
               "autoattack": kernels.section_autoattack, "evaltime": evaltime.section_evaltime,
               "options": kernels.section_options,
               "dag": lambda b: dag.section_dag(b, params_file, workdir), "dvc": lambda b: dag.section_dvc(b, workdir),
               "pipeline": lambda b: dag.section_pipeline(b, args.from_empty, params_file, workdir)}
    names = args.only or [n for n in SECTIONS if n != "dag" or args.from_empty]
    sections, failed = [], []
    try:
        for name in names:
            t0 = time.perf_counter()
            try:
                done = runners[name](b)
            except Exception as err:  # one broken section must not lose the others' figures
                traceback.print_exc()
                failed.append(name)
                done = Section(name, f"failed: {type(err).__name__}: {err}")
            done = done if isinstance(done, list) else [done]
            done[-1].notes.append(f"(section took {time.perf_counter() - t0:.0f} s; {provenance()})")
            for section in done:
                print(section.markdown(), flush=True)
            sections += done
            write_report(out, sections, sizes, argv, merge=args.update)
    finally:
        if b.forkserver_dir:
            from pipeline import forkserver

            forkserver.stop(b.forkserver_dir)
            os.environ.pop("BNAT_FORKSERVER_DIR", None)
            shutil.rmtree(b.forkserver_dir, ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {out}")
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)}")
    return sections


if __name__ == "__main__":
    main()
