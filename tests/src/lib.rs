//! Test support: traffic generator and sink.
