"""edge-sched: a Kubernetes scheduler extender for heterogeneous edge clusters."""

__version__ = "0.1.0"
