"""What the tests share and users do not need: fixtures for the real Redis and PostgreSQL and
servers a test may kill (``servers``), the worker processes of the multi-process tests
(``workers``), the app those serve (``scale_app``), request shapes, gateway and review helpers.
The Messages-API double and the engine factory users' tests need ship in :mod:`aupguard.testing`."""
