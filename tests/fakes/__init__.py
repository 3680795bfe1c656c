"""In-memory fakes of llamaman's own interfaces, for the unit tier (no sockets, no processes)."""
