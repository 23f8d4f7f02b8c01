"""The analytics HTTP API: routes and their request/response bodies."""
