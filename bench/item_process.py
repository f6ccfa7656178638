"""One item of the cores benchmark (bench/kernels.py, section_cores) in a process of its own:

    python bench/item_process.py THREADS train|attack SIZE

imports everything, says ``ready``, waits for a line on stdin, then runs SIZE PGD-3 training
steps of ``resnet_small`` at batch 128, or SIZE PGD-50 attacks on 100 images."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipeline

import torch  # noqa: E402

from pipeline.attacks.pgd import pgd  # noqa: E402
from pipeline.config import TrainConfig  # noqa: E402
from pipeline.deploy import Deployed  # noqa: E402
from pipeline.methods import METHODS  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.train import train_step  # noqa: E402

threads, what, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.3], std=[0.3])
x, y = torch.rand(128, 1, 8, 8), torch.randint(0, 10, (128,))
print("ready", flush=True)
sys.stdin.readline()  # go
if what == "train":
    cfg = TrainConfig(method="pgd_at", epochs=1, attack={"eps": 0.1, "step_size": 0.04, "steps": 3})
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(size):
        train_step(model.train(), METHODS["pgd_at"], opt, x, y, cfg)
else:
    deployed = Deployed(model)
    for _ in range(size):
        pgd(deployed, x[:100], y[:100], eps=0.1, step_size=0.01, steps=50)
