"""Shared pytest fixtures.

The embedded control plane's fixtures (local API server, kubectl helper) live in this file;
each test folder may add its own conftest for what only it needs.
"""
