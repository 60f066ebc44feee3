"""GUI-free helpers of the LungSegAI Slicer module.

``nodes`` (MRML bridge), ``results`` (importing and writing results), ``worker`` (background tasks),
``dependencies`` (torch and pip), ``catalog`` (model list), ``training`` (train/evaluate commands).
Only ``nodes`` and ``results`` import ``slicer``; none imports ``qt``, so all are testable with ``slicer-core``.
"""
