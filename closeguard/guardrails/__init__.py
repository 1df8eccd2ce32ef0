"""The guard between every agent or workflow and Close.

Owns policy files, call classification into decisions (allow, deny, needs approval),
quotas, approvals and the hash-chained audit log, and ``GuardTransport``, the httpx
transport wrapper that enforces them. Depends on ``tools`` (catalog) and ``store``.
"""
