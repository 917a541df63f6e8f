"""``cavnet demo``: the configuration (``config``), the run (``run``) and its reports (``report``: the easy
task; ``hard``: AV-Synth hard, each row beside the accuracy its inputs allow)."""
