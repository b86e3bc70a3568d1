//! From the command line to `Settings`: defaults, then the `--config` file, then each flag the
//! command was given, then validation (including that `run`'s capture buffers fit the memory
//! budget), so a bad combination is refused before anything is opened.
//!
//! Depends only on `config` (the settings and their loading and checks) and the argument
//! types of the parent.

use super::*;

impl Cli {
    /// The settings this command line asks for: defaults, the config file, then the flags.
    pub fn settings(&self) -> Result<Settings, crate::config::ConfigError> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        if let Some(f) = self.log_format {
            s.log.format = f;
        }
        if let Some(l) = &self.log_level {
            s.log.level = l.clone();
        }
        match &self.command {
            Command::Run(a) => {
                if let Some(addr) = a.udp {
                    s.udp.listen = addr;
                    // --udp chooses the input even when the file names an interface.
                    s.xdp.iface = None;
                }
                if a.iface.is_some() {
                    s.xdp.iface = a.iface.clone();
                }
                set(&mut s.xdp.mode, a.xdp_mode);
                if a.xdp_ring_size.is_some() {
                    s.xdp.ring_size = a.xdp_ring_size;
                }
                if a.xdp_pass {
                    s.xdp.pass_consumed = true;
                }
                if !a.xdp_ports.is_empty() {
                    s.xdp.ports = a.xdp_ports.clone();
                }
                set(&mut s.udp.sockets, a.udp_sockets);
                if a.recv_buffer.is_some() {
                    s.udp.recv_buffer = a.recv_buffer;
                }
                if a.status.is_some() {
                    s.status.listen = a.status;
                }
                if s.status.listen.is_none() {
                    s.status.listen = DEFAULT_STATUS.parse().ok();
                }
                if a.max_idle.is_some() {
                    s.status.max_idle = a.max_idle;
                }
                a.common.apply(&mut s);
            }
            Command::Replay(a) => {
                if a.status.is_some() {
                    s.status.listen = a.status;
                }
                a.common.apply(&mut s);
            }
            Command::Check(a) => {
                if a.iface.is_some() {
                    s.xdp.iface = a.iface.clone();
                }
            }
        }
        s.validate()?;
        // `run`'s capture buffers (the XDP ring, the UDP sockets' receive buffers) must fit the
        // budget too: refused here, naming the keys, before anything is opened.
        if let Command::Run(_) = &self.command {
            s.memory_split(s.run_capture())?;
        }
        Ok(s)
    }
}

const DEFAULT_STATUS: &str = crate::config::DEFAULT_STATUS_ADDR;

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

impl CommonArgs {
    fn apply(&self, s: &mut Settings) {
        if self.upstream.is_some() {
            s.upstream.url = self.upstream.clone();
        }
        if self.jsonl.is_some() {
            s.jsonl.path = self.jsonl.clone();
        }
        set(&mut s.upstream.pool_size, self.pool_size);
        set(&mut s.upstream.protocol, self.upstream_protocol);
        set(&mut s.upstream.connect_timeout, self.connect_timeout);
        set(&mut s.upstream.response_timeout, self.response_timeout);
        set(&mut s.upstream.queue_requests, self.queue_requests);
        if self.queue_bytes.is_some() {
            s.upstream.queue_bytes = self.queue_bytes;
        }
        if self.add_client_ip.is_some() {
            s.upstream.client_ip_header = self.add_client_ip.clone();
        }
        if self.add_vni.is_some() {
            s.upstream.vni_header = self.add_vni.clone();
        }
        if !self.vxlan_ports.is_empty() {
            s.capture.vxlan_ports = self.vxlan_ports.clone();
        }
        if !self.vni_allow.is_empty() {
            s.capture.vni_allow = self.vni_allow.clone();
        }
        if !self.vni_deny.is_empty() {
            s.capture.vni_deny = self.vni_deny.clone();
        }
        if !self.server_ports.is_empty() {
            s.capture.server_ports = self.server_ports.clone();
        }
        set(&mut s.capture.flow_key, self.flow_key);
        set(&mut s.reassembly.workers, self.workers);
        set(&mut s.reassembly.reorder_timeout, self.reorder_timeout);
        set(&mut s.reassembly.idle_timeout, self.idle_timeout);
        set(&mut s.reassembly.max_flow_buffer, self.max_flow_buffer);
        set(&mut s.memory_budget, self.memory_budget);
        set(&mut s.http.max_head_bytes, self.max_head_bytes);
        set(&mut s.http.max_headers, self.max_headers);
        set(&mut s.http.h2_max_table_size, self.h2_max_table_size);
        set(&mut s.http.h2_max_streams, self.h2_max_streams);
        set(&mut s.http.max_body_bytes, self.max_body_bytes);
        set(&mut s.drain_timeout, self.drain_timeout);
        set(&mut s.proxy_protocol.mode, self.proxy_protocol);
        let lists = [
            (
                &mut s.proxy_protocol.require_ports,
                &self.proxy_protocol_require_ports,
            ),
            (
                &mut s.proxy_protocol.forbid_ports,
                &self.proxy_protocol_forbid_ports,
            ),
        ];
        for (slot, flag) in lists {
            if !flag.is_empty() {
                slot.clone_from(flag);
            }
        }
        if self.keep_health_checks {
            s.health_checks.keep = true;
        }
        if self.syn_data {
            s.reassembly.syn_data = true;
        }
        if !self.health_check_cidrs.is_empty() {
            s.health_checks
                .source_cidrs
                .clone_from(&self.health_check_cidrs);
        }
        let f = &mut s.filter;
        for (slot, flag) in [
            (
                &mut s.health_checks.user_agents,
                &self.health_check_user_agents,
            ),
            (&mut f.allow_hosts, &self.allow_hosts),
            (&mut f.deny_hosts, &self.deny_hosts),
            (&mut f.allow_methods, &self.allow_methods),
            (&mut f.deny_methods, &self.deny_methods),
            (&mut f.allow_paths, &self.allow_paths),
            (&mut f.deny_paths, &self.deny_paths),
            (&mut f.allow_path_regex, &self.allow_path_regex),
            (&mut f.deny_path_regex, &self.deny_path_regex),
        ] {
            if !flag.is_empty() {
                slot.clone_from(flag);
            }
        }
        set(&mut f.sample, self.sample);
        set(&mut f.sample_seed, self.sample_seed);
        if self.rate_limit.is_some() {
            f.rate_limit = self.rate_limit;
        }
        if self.rate_limit_burst.is_some() {
            f.rate_limit_burst = self.rate_limit_burst;
        }
    }
}
