"""PGD-10 adversarial training epoch time of PreAct-ResNet-18 on CIFAR-10 shapes, with and without
the speed options (channels_last, compile, bf16 amp), through the pipeline's training loop.

    python bench/gpu_epoch.py [--device cuda] [--n 10000] [--batch-size 128] [--epochs 2]
                              [--no-compile] [--append BENCHMARKS.md]

The data is random uint8 images (3x32x32, 10 classes): the time of an epoch does not depend on
what the pixels show. Each variant trains a fresh model for --epochs epochs; the table gives the
last epoch (steady state) and the first one, which includes compiling and warm-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline.config import TrainConfig  # noqa: E402
from pipeline.data import Splits  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.train import train  # noqa: E402

ARCH = "preact_resnet18"
OPTIONS = {  # label -> TrainConfig fields
    "plain": {},
    "channels_last": {"channels_last": True},
    "bf16 amp": {"amp": True},
    "compile": {"compile": True},
    "channels_last + bf16 amp + compile": {"channels_last": True, "amp": True, "compile": True},
}


def cifar_shapes(n: int, device: torch.device, seed: int = 0) -> Splits:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=gen)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    return Splits(x, y, x[:8], y[:8], mean, std).to(device)  # a tiny test split: the epoch is the training


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=10_000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the variants that compile")
    ap.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    splits = cifar_shapes(args.n, device)
    rows = []
    for label, update in OPTIONS.items():
        if update.get("compile") and args.no_compile:
            continue
        if update.get("amp") and device.type != "cuda":
            continue  # bf16 autocast is CUDA-only in the pipeline
        cfg = TrainConfig(method="pgd_at", epochs=args.epochs, batch_size=args.batch_size, lr=0.1,
                          attack={"eps": 8 / 255, "step_size": 2 / 255, "steps": 10}, **update)
        torch.manual_seed(0)
        model = build_model(ARCH, num_classes=10, in_channels=3, mean=splits.mean, std=splits.std).to(device)
        history = train(model, splits, cfg, seed=0, progress=False)
        last, first = history[-1]["seconds"], history[0]["seconds"]
        rows.append({"variant": label, "epoch s": last, "first epoch s": first, "images/s": args.n / last})
    base = rows[0]["epoch s"]
    for r in rows:
        r["speed-up"] = base / r["epoch s"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"## PreAct-ResNet-18, PGD-10 adversarial training epoch ({name})", "",
             f"CIFAR-10 shapes (random uint8 3x32x32, 10 classes), {args.n} images per epoch, batch "
             f"{args.batch_size}, eps 8/255, step 2/255, through `pipeline.train.train`; the last of "
             f"{args.epochs} epochs (the first includes compiling and warm-up). Produced by "
             f"`python bench/gpu_epoch.py {' '.join(argv if argv is not None else sys.argv[1:])}`.".rstrip(), "",
             "| variant | epoch s | first epoch s | images/s | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['epoch s']:.2f} | {r['first epoch s']:.2f} | {r['images/s']:.0f} | "
              f"{r['speed-up']:.2f}x |" for r in rows]
    if device.type != "cuda":
        lines += ["", "- bf16 amp: not run (autocast is CUDA-only in the pipeline)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)
    return rows


if __name__ == "__main__":
    main()
