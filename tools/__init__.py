"""Developer tools: the demo, the benchmark, the sample log and the process driver they and
the tests share (``tools.driver``)."""
