"""Agents: durable task steps, the runner that drives them, and behaviours."""
