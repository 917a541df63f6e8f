"""Baselines on a store without the fusion model: the frozen encoder's own zero-shot and a linear probe
(``probe.py``), the ablation's "Frozen encoder" rows."""
