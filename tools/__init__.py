"""Developer tools: the demo, the benchmark, the sample log, the diagram command line, and what
they and the tests share: the process driver (``tools.driver``) and the raw wire client
(``tools.wire_client``)."""
