"""Eval suites (not built yet).

Will hold the suite format (environments, tools and tasks as data), the runner that plays
agents and workflows against the simulator, grading by state hash and state diff, and
reports. Depends on ``simulator``, ``agent`` and ``workflows``.
"""
