"""The Python API: Cluster, Job, Workflow."""
