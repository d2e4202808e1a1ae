"""The long-running process: backends, pipeline, runner, scheduler, store, notify."""
