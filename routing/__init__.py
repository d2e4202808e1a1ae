"""Decisions without I/O: routing rules, assignment, approvals, SLA policy."""
