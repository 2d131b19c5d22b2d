"""The fleet: the jobs a run measures (jobs.py), the runner (runner.py, ledger.py, measurers.py), the agent
protocol's host side (protocol.py), shipping to the device cache (shipping.py), LiteRT's benchmark_model
(benchmark_model.py), host validation of converted variants (validation.py), and the transports."""
