"""Backends: one interface for policy generation and judging (batch of chats in, completions out)."""
