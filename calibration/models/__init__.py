"""Volatility models (stateless: parameters are arrays passed in)."""
