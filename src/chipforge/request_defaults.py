"""The request a serving plan prices when none is given, defined once. A module of its own
so that the CLI and the studio read the defaults without loading `chipforge.cluster`
(tests/test_cold_start.py)."""

# The request priced when none is given, each defined once and read by every place that
# takes it (a test fails when a command states another). Two on purpose, not one: `serve` and
# `plan_serving` price one engine on a chat-style request, 2048 prompt tokens in and 256 out
# (the input length of TensorRT-LLM's published latency tables, src/chipforge/data/
# published.csv); a site (`datacenter`, `site()`, a sweep's [serving], a decide scenario's
# [[workload.serve]]) prices a day of mixed traffic at 1024 in / 1024 out. Either change
# would move the figures documented for the other (docs/serving.md, docs/datacenter.md).
SERVE_ISL, SERVE_OSL = 2048, 256
SITE_ISL, SITE_OSL = 1024, 1024
