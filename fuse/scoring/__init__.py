"""Scoring a fusion model beyond one pass: over spatial views (``views``) and with one modality masked
(``modality``)."""
