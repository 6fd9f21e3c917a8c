"""Reads of the ingest app, one module per subject."""
