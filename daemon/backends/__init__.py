"""Mailbox backends (reading) and transports (sending); chosen in daemon.app."""
