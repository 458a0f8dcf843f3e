"""Training: model builders and registry, dtype policy, schedules, callbacks, warm starts, distribution, the loop."""
