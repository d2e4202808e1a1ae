"""Real-server fixtures for the backend tests: Dovecot, aiosmtpd, the fault proxy."""

from tests.support.dovecot import dovecot, make_dovecot  # noqa: F401
from tests.support.faultproxy import fault_proxy  # noqa: F401
from tests.support.smtpd import smtp_server  # noqa: F401
