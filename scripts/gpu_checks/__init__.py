"""The steps of `make gpu-check` (scripts/gpu_check.py), one module per kind of step."""
