//! Shared pieces of the end-to-end tests live in `tests/e2e`.
