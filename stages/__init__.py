"""Entry points of the DVC stages: ``python -m stages.NAME [ITEM]``."""
