"""The standard block library. Every module here is imported by the registry."""
