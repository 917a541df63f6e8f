"""finetune, wired: the processes (one, or several under ``torchrun``), the run folder held for the run,
then ``finetune.run.FinetuneRun`` (see there for what is trained and what the run folder gets)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cavnet.finetune import distributed as fd
from cavnet.finetune.config import FinetuneConfig
from cavnet.extract.datasets import Corpus
from cavnet.finetune.run import FinetuneResult, FinetuneRun, corpus_rows
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.run.folder import claim_run_folder, hold_run_folder


def run_finetune(cfg: FinetuneConfig, corpus: Corpus, out: Path, resume: bool = False, eval_init: bool = True,
                 echo: Callable[[str], None] = print, progress: bool = True) -> FinetuneResult:
    """Fine-tune ``cfg.init`` on ``corpus``, writing the run folder ``out``."""
    env, device = fd.setup(cfg.device)
    try:
        # a checkpoint that does not fit, a folder of other files, a corpus that cannot be read: refused
        # before OUT is made (and before a synth corpus is generated)
        init = Checkpoint.load(cfg.init)
        inputs = [Path(cfg.init), *corpus.input_files()]
        if env.main:
            claim_run_folder(out, "finetune", inputs=inputs, mark=False)
        rows = corpus_rows(cfg, env, init, corpus)
        with hold_run_folder(out, env.main, command="finetune", inputs=inputs):
            run = FinetuneRun(cfg, env, device, corpus, out, echo, progress, init=init, rows=rows)
            return run.fit(resume, eval_init)
    finally:
        fd.teardown(env)
