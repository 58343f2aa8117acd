"""shared_inbox: IMAP mailboxes as a shared ticket inbox inside a host Flask app."""
from .extension import InboxState, SharedInbox, get_state
from .schema import exclude_from_host_migrations

__version__ = "0.1.0"

__all__ = ["SharedInbox", "InboxState", "get_state", "exclude_from_host_migrations"]
