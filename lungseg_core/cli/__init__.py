"""Thin command-line entry points; all work happens in the pipeline-stage packages."""
