"""Test helpers: sample data generators, store conformance checks, assert helpers."""
