"""Fixtures for testing MCP clients and servers against vibe-jobs (not loaded by default)."""
