"""Thin executors the batch task calls: each one calls an engine and returns its result.

Flows register them with `flows.runner.register_executor(name, function)`; each takes the
`OperationContext` and the operation's JSON arguments.
"""
