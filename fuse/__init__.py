"""Stage two: the CAV-Net fusion model, its loss, store-backed batches and the training loop."""
