"""Handlers for the test-only operations of ``tests/fake_spec/`` (see test_request_validation)."""
