"""Scheduler services: what the periodic jobs do, callable (and tested) without a scheduler."""
