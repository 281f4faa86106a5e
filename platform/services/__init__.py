"""The application layer: what a user can do (embed, select, propagate, label, fine-tune, run a round), called by
the CLI, the jobs and the web UI."""
