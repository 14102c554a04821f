"""The application: the one wiring of the stages (:mod:`causalwatch.app.pipeline`) and what
runs it: the live process (:mod:`~causalwatch.app.service`), offline replay
(:mod:`~causalwatch.app.replay`), the demo (:mod:`~causalwatch.app.demo`) and the command
line (:mod:`~causalwatch.app.cli`). Only this package wires cores to adapters."""
