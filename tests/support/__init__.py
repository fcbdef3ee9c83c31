"""Test helpers shared across test packages (real loopback servers, builders)."""
