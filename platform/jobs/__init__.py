"""The job system: kinds with validated params (registry), a runner per job, and workers."""
