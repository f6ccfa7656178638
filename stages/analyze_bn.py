"""analyze_bn NAME/PAIR: per-layer BN statistics of two models, the m/b rewrite, channels turned off
or magnified, logit similarity, and feature maps ("Adversarial Masking", Fig. 1, Fig. 4, Table 9;
"On Fragile Features and Batch Normalization in Adversarial Training"). PAIR is one of
``analyses.NAME.analyze_bn``; its results go to analyses/NAME/analyze_bn/PAIR/."""

from pipeline.analysis.bn_plots import plot_bn_params_first_layer, plot_feature_maps, plot_rescaling_distributions
from pipeline.analysis.bn_stats import (
    bn_layer_table,
    channel_changes,
    first_block_features,
    logit_similarity,
    rescaling_by_layer,
    rescaling_table,
)
from pipeline.data import load_splits
from pipeline.io import write_csv, write_json
from pipeline.layout import analysis_dir
from pipeline.train import to_float
from stages.common import Item, item_run, run, start, trained_model


def items(params, group: str) -> list[Item]:
    return [Item("analyze_bn", group, name, 1.0) for name in params.analyses[group].analyze_bn]


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def main(argv: list[str]) -> None:
    params, item, device = start(argv, items, "analyze_bn pair")
    name, cfg = item.name, params.analyze_bn
    pair = params.analysis("analyze_bn", name)
    a, b = trained_model(params, pair.a, device)[0], trained_model(params, pair.b, device)[0]
    splits = load_splits(params.data)
    x = to_float(splits.x_test[:cfg.n_samples]).to(device)

    section = {"analyze_bn": cfg.model_dump(), "pair": pair.model_dump()}
    with item_run(item.label, params, section, analysis_dir(params, "analyze_bn", name)) as it:
        layers = bn_layer_table(a, b)
        rescale = rescaling_table(a, b)
        changes = channel_changes(a, b, x, threshold=cfg.off_threshold, magnify=cfg.magnify)
        metrics = {f"mean_cos_{f}": _mean(layers, f"cos_{f}") for f in ("mean", "var", "gamma", "beta")}
        metrics["first_layer"] = {k: v for k, v in layers[0].items() if k != "layer"} | {"layer": layers[0]["layer"]}
        metrics["mean_m_diff"] = _mean(rescale, "m_diff")
        metrics["mean_b_diff"] = _mean(rescale, "b_diff")
        metrics["channels_off"] = sum(c["n_off"] for c in changes)
        metrics["channels_on"] = sum(c["n_on"] for c in changes)
        metrics["channels_magnified"] = sum(c["n_magnified"] for c in changes)
        metrics["channels"] = sum(r["channels"] for r in layers)
        ref = trained_model(params, pair.logits_of, device)[0]
        metrics["logits_vs_" + pair.logits_of] = {pair.b: logit_similarity(b, ref, x), pair.a: logit_similarity(a, ref, x)}
        write_csv(it.tmp / "layers.csv", layers)
        write_csv(it.tmp / "rescaling.csv", rescale)
        write_json(it.tmp / "channel_changes.json", changes)
        write_json(it.tmp / "metrics.json", metrics)
        plot_bn_params_first_layer(a, b, (pair.a, pair.b), it.tmp / "first_bn_layer.png")
        plot_rescaling_distributions({pair.a: rescaling_by_layer(a), pair.b: rescaling_by_layer(b)},
                                     it.tmp / "rescaling.png")
        imgs = x[:cfg.n_feature_images]
        first = changes[0]
        plot_feature_maps(first_block_features(a, imgs), first_block_features(b, imgs), first["off"],
                          first["magnified"], it.tmp / "feature_maps.png", labels=(pair.a, pair.b),
                          layer=f"{layers[0]['layer']} (the first BN)")
        it.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))


if __name__ == "__main__":
    run(main)
