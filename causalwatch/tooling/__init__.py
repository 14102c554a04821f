"""Test and demo tooling: embedded real servers (:mod:`~causalwatch.tooling.embedded`) and
the scenario simulator with known truth (:mod:`~causalwatch.tooling.simulate`)."""
