"""Placeholder: filled by its issue."""
COMMANDS: dict = {}
