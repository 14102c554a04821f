"""ingest stage of causalwatch."""
