//! What the rest of the program takes from the settings: thread counts with their "0 means
//! per core" defaults, which capture `run` opens, and each room's own configuration type built
//! from the keys (proxy policy, request filter, HTTP limits, stream reassembly).
//!
//! Kept here, beside the keys, so that each room takes its own configuration type and need not
//! know the file's layout.

use super::budget::CaptureKind;
use super::Settings;

impl Settings {
    /// Reassembly workers: `reassembly.workers`, or one per core but one.
    pub fn workers(&self) -> usize {
        if self.reassembly.workers == 0 {
            default_workers()
        } else {
            self.reassembly.workers
        }
    }

    /// UDP sockets (and reading threads): `udp.sockets`, or one per core.
    pub fn udp_sockets(&self) -> usize {
        if self.udp.sockets == 0 {
            cores()
        } else {
            self.udp.sockets
        }
    }

    /// What `run` reads: XDP when an interface is set, else UDP.
    pub fn run_capture(&self) -> CaptureKind {
        if self.xdp.iface.is_some() {
            CaptureKind::Xdp
        } else {
            CaptureKind::Udp {
                sockets: self.udp_sockets(),
            }
        }
    }

    pub fn proxy_policy(&self) -> crate::proxy::ProxyPolicy {
        let sorted = |v: &[u16]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        crate::proxy::ProxyPolicy {
            default: self.proxy_protocol.mode,
            require: sorted(&self.proxy_protocol.require_ports),
            forbid: sorted(&self.proxy_protocol.forbid_ports),
        }
    }

    pub fn filter_config(&self) -> crate::filter::FilterConfig {
        let (h, f) = (&self.health_checks, &self.filter);
        crate::filter::FilterConfig {
            keep_health_checks: h.keep,
            health_check_user_agents: h.user_agents.clone(),
            health_check_cidrs: h.source_cidrs.clone(),
            allow_hosts: f.allow_hosts.clone(),
            deny_hosts: f.deny_hosts.clone(),
            allow_methods: f.allow_methods.clone(),
            deny_methods: f.deny_methods.clone(),
            allow_paths: f.allow_paths.clone(),
            deny_paths: f.deny_paths.clone(),
            allow_path_regex: f.allow_path_regex.clone(),
            deny_path_regex: f.deny_path_regex.clone(),
            sample: f.sample,
            sample_seed: f.sample_seed,
            rate_limit: f.rate_limit,
            rate_limit_burst: f.rate_limit_burst,
        }
    }

    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            max_head_bytes: self.http.max_head_bytes.as_usize(),
            max_headers: self.http.max_headers,
            max_body_bytes: self.http.max_body_bytes.bytes(),
            original_length_header: self.http.original_length_header.clone(),
            h2_max_table_size: self.http.h2_max_table_size.as_usize(),
            h2_max_streams: self.http.h2_max_streams,
        }
    }

    pub fn stream_config(&self) -> crate::reassembly::StreamConfig {
        crate::reassembly::StreamConfig {
            reorder_timeout_ns: self.reassembly.reorder_timeout.0.as_nanos() as u64,
            max_buffered: self.reassembly.max_flow_buffer.as_usize(),
            max_window: self.reassembly.max_window.bytes(),
            syn_data: self.reassembly.syn_data,
        }
    }
}

/// Number of threads to use when a setting says 0.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reassembly workers when `reassembly.workers` is 0: one per core but one, which the capture
/// (and the outputs) need. On the 2-vCPU instances this targets (c5n.large), a second worker
/// only contends with the capture thread: offline replay measured 1.9M packets/s with one
/// worker against 1.5M with two.
pub fn default_workers() -> usize {
    cores().saturating_sub(1).max(1)
}
