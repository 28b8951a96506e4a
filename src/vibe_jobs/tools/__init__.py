"""MCP tools: the job control tools and the built-in work tools."""
