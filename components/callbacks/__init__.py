"""Thin callbacks: parse inputs, call the numerical core, return data for the components."""
