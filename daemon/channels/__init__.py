"""Notification channels besides e-mail: a generic webhook, Teams, Slack, WhatsApp (Twilio).

``announce`` writes one ``channel_outbox`` row per request a configured channel
wants for an event, in the caller's transaction; ``ChannelSender`` sends them
after the commit and retries like the mail outbox. ``formats`` knows each
endpoint's wire format.
"""

from daemon.channels.outbox import ChannelSender, announce

__all__ = ["ChannelSender", "announce"]
