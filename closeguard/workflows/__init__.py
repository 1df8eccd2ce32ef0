"""Workflows (not built yet).

Will hold workflow definitions and the packaged library (one workflow a file), their
triggers (Close webhooks, Event Log catch-up, APScheduler schedules), and the runtime:
webhook receiver, durable inbox, run queue, effect journal and workers, so nothing is lost
when a process dies or a webhook is missed. Depends on ``tools``, ``guardrails``, ``agent``
and ``store``.
"""
