"""MCP wiring: the MCPServer with job tools, control tools, resources and extensions."""
