"""Read-only queries of the results store, one module per page family."""
