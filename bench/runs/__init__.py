"""Running sweeps: suites of cells, the run loop and its executors, the row schema and store, provenance."""
