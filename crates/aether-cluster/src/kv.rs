//! The KV buckets of a cluster: names, configurations, typed get/CAS/watch helpers.
