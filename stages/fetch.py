"""fetch: materialize the configured dataset as data/prepared/data.npz.

The MLflow run reference goes beside it (data/fetch/), not into data/prepared: every stage depends
on data/prepared, and a run id inside it would make two builds of the same data differ, so DVC's
run cache could not match what was built downstream of either."""

from pathlib import Path

from pipeline.data import dataset_file, load_splits, prepare, prepared_dir, write_npz
from pipeline.io import atomic_dir
from pipeline.tracking import StageRun
from stages.common import load, run, write_timing


def main(argv: list[str]) -> None:
    params = load()
    section = {"data": params.data.model_dump(), "seed": params.seed}
    arrays = prepare(params.data, seed=params.seed)  # a missing or malformed source fails before any run starts
    with StageRun("fetch", params.tracking.experiment, section) as tracker:
        with atomic_dir(prepared_dir(params.data)) as tmp:
            write_npz(arrays, tmp / dataset_file(params.data).name)
        with atomic_dir(Path("data") / "fetch") as tmp:
            tracker.write_ref(tmp)
            write_timing(tmp, "fetch")
        tracker.record_outs(prepared_dir(params.data), Path("data") / "fetch")
        splits = load_splits(params.data)
        tracker.log_metrics({"n_train": len(splits.x_train), "n_test": len(splits.x_test),
                             "num_classes": splits.num_classes})
    print(f"wrote {dataset_file(params.data)}: {len(splits.x_train)} train, {len(splits.x_test)} test, "
          f"{tuple(splits.x_train.shape[1:])} images, {splits.num_classes} classes")


if __name__ == "__main__":
    run(main)
