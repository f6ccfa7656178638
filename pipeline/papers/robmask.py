""""Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization". ResNet-18
on CIFAR-10, PGD at 8/255 (Table 1); clean accuracy after 20 epochs (Table 3)."""

from dataclasses import replace

from pipeline.papers.ledger import Claim, Paper, Setting

SETTING = Setting(dataset="cifar10", arch="resnet18", epochs=None, threat_eps=8 / 255, attack="PGD",
                  deployment="as its method deploys it", metric="correct on the attacked input")
TABLE3 = replace(SETTING, epochs=20, attack="none (clean accuracy)")

PAPER = Paper("robmask", "Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization",
              SETTING, (
    Claim("robmask.t1.bn_params.robust", "Table 1", "Adversarial fine-tuning of BN alone makes a standard "
          "network robust", a="bn_params", b="standard", metric="pgd", direction=1, paper_a=26.51, paper_b=0.0),
    Claim("robmask.t1.bn_params.clean", "Table 1", "Adversarial fine-tuning of BN alone costs a standard network clean "
          "accuracy", a="bn_params", b="standard",
          metric="clean", direction=-1, paper_a=53.96, paper_b=91.97),
    Claim("robmask.t1.clean_bn.clean", "Table 1", "Standard fine-tuning of BN gives an adversarially trained "
          "network back clean accuracy", a="adv_clean_bn", b="adversarial", metric="clean", direction=1,
          paper_a=86.96, paper_b=78.47),
    Claim("robmask.t1.clean_bn.robust", "Table 1", "Standard fine-tuning of BN takes most of an adversarially trained "
          "network's robustness", a="adv_clean_bn",
          b="adversarial", metric="pgd", direction=-1, paper_a=5.83, paper_b=48.67),
    Claim("robmask.t3.robmask.clean", "Table 3", "RobMask (deployed at the clean masking) is more accurate on "
          "clean images than standard training", a="robmask", b="standard", metric="clean", direction=1,
          paper_a=94.64, paper_b=92.59),
    Claim("robmask.t3.advprop.clean", "Table 3", "AdvProp (main BN) is more accurate on clean images than "
          "standard training", a="advprop", b="standard", metric="clean", direction=1, paper_a=93.45, paper_b=92.59),
    Claim("robmask.t3.robmask_vs_advprop", "Table 3", "RobMask is more accurate on clean images than AdvProp",
          a="robmask", b="advprop", metric="clean", direction=1, paper_a=94.64, paper_b=93.45),
))
#: the setting each claim's figures come from, where it is not the paper's default
SETTINGS = {c.id: TABLE3 for c in PAPER.claims if c.where == "Table 3"}
