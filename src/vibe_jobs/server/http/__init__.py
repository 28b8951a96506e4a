"""The HTTP face beside /mcp: dashboard pages, live updates, health probes and Prometheus metrics."""
