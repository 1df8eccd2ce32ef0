"""The simulator's time: the one ``Clock`` of ``closeguard.tools.clock``, re-exported.

The simulator and the client share one clock abstraction, so ``Simulator.client()`` can
hand its clock to the client and a 429 on a ``FakeClock`` costs no real time.
"""

from closeguard.tools.clock import DEFAULT_FAKE_START, Clock, FakeClock, SystemClock

__all__ = ["DEFAULT_FAKE_START", "Clock", "FakeClock", "SystemClock"]
