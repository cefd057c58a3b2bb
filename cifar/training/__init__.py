"""The training loop and its mechanics: batches, schedules, callbacks, resume, precision, distribution."""
