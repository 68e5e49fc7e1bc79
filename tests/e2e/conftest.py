"""End-to-end tests use the root conftest's `bootstrap` (the bundled broker) and `fresh_db` fixtures."""
