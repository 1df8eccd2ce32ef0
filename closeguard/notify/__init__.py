"""Telling people: approval requests in sales words, delivered through Apprise.

``Describer`` builds the sentence an approval leads with ("Move Acme Robotics'
'Expansion' deal to Won, 240,000 USD") from the records it touches, and names lead and
user ids; the console's cards and the notifications both use it. ``Notifier`` tells the
people who can answer each new request (``CLOSEGUARD_NOTIFY`` and each account's own
URLs), retries failed deliveries with backoff, and reminds half-way to expiry.
Depends on ``tools``, ``guardrails`` and ``store``.
"""

from closeguard.notify.sender import Notice, Notifier, split_urls, valid_url
from closeguard.notify.sentence import Describer, money, possessive

__all__ = [
    "Describer",
    "Notice",
    "Notifier",
    "money",
    "possessive",
    "split_urls",
    "valid_url",
]
