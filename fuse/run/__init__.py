"""Training runs: the harness every run shares (``harness``), its optimisation (``optim``), the run folder's
files (``folder``), and fuse-train's run (``fusion``); fine-tune's run is ``cavnet.finetune.run``."""
