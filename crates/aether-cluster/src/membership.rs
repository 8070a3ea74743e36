//! Membership: heartbeats, the live view, join and leave.
