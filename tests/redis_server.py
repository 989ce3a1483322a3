"""A real Redis for the tests: Debian's ``redis-server`` on a free loopback port
(:func:`workbench.background.redis_server`)."""

from workbench.background import REDIS, redis_server  # noqa: F401 (the tests' names)
