"""A Close organization in a box: an ASGI app faithful to Close's API.

Owns the simulated state, routes per resource, the Event Log, signed webhook delivery,
rate limits, faults, seeded worlds and the canonical state hash. Depends on ``tools``
(catalog and models) only.
"""
