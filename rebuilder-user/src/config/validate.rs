//! Validation: what types alone cannot check. Ranges, lists that must not be empty or overlap,
//! header and interface names, the request filter's own checks, and (through `budget`) whether
//! the explicit sizes fit the memory budget. Each error names its key.
//!
//! It reads the settings and builds nothing lasting: the filter and the upstream address are
//! constructed only to check them, and then dropped.

use super::budget::CaptureKind;
use super::units::ByteSize;
use super::{ConfigError, Settings, MIN_MEMORY_BUDGET, XDP_RING_MAX, XDP_RING_MIN};

impl Settings {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, message: impl Into<String>) -> ConfigError {
            ConfigError::Value {
                key: key.into(),
                message: message.into(),
            }
        }
        if self.capture.vxlan_ports.is_empty() {
            return Err(bad("capture.vxlan_ports", "at least one port is needed"));
        }
        if let Some(v) = self
            .capture
            .vni_allow
            .iter()
            .chain(&self.capture.vni_deny)
            .find(|v| **v > 0xFF_FFFF)
        {
            return Err(bad(
                "capture.vni_allow/vni_deny",
                format!("VNI {v} is over 16777215 (24 bits)"),
            ));
        }
        if self.udp.batch == 0 || self.udp.batch > 1024 {
            return Err(bad("udp.batch", "must be 1..=1024"));
        }
        if self.reassembly.max_flow_buffer.bytes() == 0 {
            return Err(bad("reassembly.max_flow_buffer", "must be above 0"));
        }
        if self.memory_budget < ByteSize(MIN_MEMORY_BUDGET) {
            return Err(bad(
                "memory_budget",
                format!("must be at least {}", ByteSize(MIN_MEMORY_BUDGET)),
            ));
        }
        // The queues' keys and the budget's minimum, whatever the input; `run` checks its own
        // capture's buffers too (`Cli::settings`), and the pipeline splits for the input it
        // opens.
        self.memory_split(CaptureKind::Pcap)?;
        if self.reassembly.idle_timeout.0.is_zero() {
            return Err(bad("reassembly.idle_timeout", "must be above 0"));
        }
        if self.http.max_head_bytes < ByteSize(64) {
            return Err(bad("http.max_head_bytes", "must be at least 64 bytes"));
        }
        if self.http.max_headers == 0 {
            return Err(bad("http.max_headers", "must be above 0"));
        }
        // A table this side must mirror, charged per connection: 1 MiB is far above what any
        // server advertises (4 KiB to 64 KiB).
        if self.http.h2_max_table_size > ByteSize(1 << 20) {
            return Err(bad("http.h2_max_table_size", "must be at most 1MiB"));
        }
        if self.http.h2_max_streams == 0 {
            return Err(bad("http.h2_max_streams", "must be above 0"));
        }
        check_header_name(
            "http.original_length_header",
            &self.http.original_length_header,
        )?;
        if self.upstream.pool_size == 0 {
            return Err(bad("upstream.pool_size", "must be above 0"));
        }
        if self.upstream.queue_requests == 0 || self.jsonl.queue_requests == 0 {
            return Err(bad(
                "upstream.queue_requests/jsonl.queue_requests",
                "must be above 0",
            ));
        }
        if let Some(h) = &self.upstream.client_ip_header {
            check_header_name("upstream.client_ip_header", h)?;
        }
        if let Some(h) = &self.upstream.vni_header {
            check_header_name("upstream.vni_header", h)?;
        }
        if let Some(url) = &self.upstream.url {
            crate::output::upstream::UpstreamAddr::parse(url)
                .map_err(|e| bad("upstream.url", e.to_string()))?;
        }
        if let Some(iface) = &self.xdp.iface {
            check_iface_name("xdp.iface", iface)?;
        }
        if self.status.max_idle.is_some_and(|s| s.0.is_zero()) {
            return Err(bad(
                "status.max_idle",
                "must be above 0 (leave it out for none)",
            ));
        }
        if let Some(p) = self
            .proxy_protocol
            .require_ports
            .iter()
            .find(|p| self.proxy_protocol.forbid_ports.contains(p))
        {
            return Err(bad(
                "proxy_protocol.require_ports/forbid_ports",
                format!("port {p} is in both lists"),
            ));
        }
        for (key, list) in [
            ("health_checks.user_agents", &self.health_checks.user_agents),
            ("filter.allow_hosts", &self.filter.allow_hosts),
            ("filter.deny_hosts", &self.filter.deny_hosts),
            ("filter.allow_paths", &self.filter.allow_paths),
            ("filter.deny_paths", &self.filter.deny_paths),
        ] {
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(bad(key, "entries must not be empty"));
            }
        }
        for (key, list) in [
            ("filter.allow_methods", &self.filter.allow_methods),
            ("filter.deny_methods", &self.filter.deny_methods),
        ] {
            if let Some(m) = list.iter().find(|m| {
                m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            }) {
                return Err(bad(key, format!("{m:?} is not a method")));
            }
        }
        // The filter's own checks (fractions, rates, regexes) name their keys.
        crate::filter::RequestFilter::new(
            &self.filter_config(),
            &prometheus_client::metrics::family::Family::default(),
        )
        .map_err(|e| bad(&e.key, e.message))?;
        if let Some(size) = self.xdp.ring_size {
            let ring = size.bytes();
            if !ring.is_power_of_two() || !(XDP_RING_MIN..=XDP_RING_MAX).contains(&ring) {
                return Err(bad(
                    "xdp.ring_size",
                    format!(
                        "{} is not a power of two from {} to {}",
                        size,
                        ByteSize(XDP_RING_MIN),
                        ByteSize(XDP_RING_MAX)
                    ),
                ));
            }
        }
        if self.udp.recv_buffer.is_some_and(|b| b.bytes() == 0) {
            return Err(bad(
                "udp.recv_buffer",
                "must be above 0 (leave it out to derive it from memory_budget)",
            ));
        }
        Ok(())
    }
}

/// A header name must be an RFC 9110 token, or the inserted line would corrupt the request.
fn check_header_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Value {
            key: key.into(),
            message: format!("{name:?} is not a valid header name"),
        })
    }
}

/// An interface name as the kernel accepts it: 1 to 15 bytes, no `/`, `:` or whitespace.
fn check_iface_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Value {
            key: key.into(),
            message: format!(
                "{name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
            ),
        })
    }
}
