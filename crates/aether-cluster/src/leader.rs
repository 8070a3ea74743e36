//! The leader lease: campaign, renew, step down, term, settle delay.
