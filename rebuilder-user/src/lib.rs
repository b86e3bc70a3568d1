//! rebuilder: turns AWS VPC Traffic Mirroring packets (VXLAN) back into the HTTP requests they
//! carry and replays them, byte for byte, to a WAF (or writes them as JSON lines).
//!
//! Data flows one way, no room importing one later in the flow (`ARCHITECTURE.md` at the
//! repository root is the map: the invariants, their known exceptions, where to change what):
//!
//! ```text
//! capture → dispatch → worker [ reassembly → proxy → http (→ h2) ] → filter → output
//! ```
//!
//! - The stages: `capture` (XDP ring, UDP sockets, pcap files → [`segment::Segment`]),
//!   `dispatch` (batches to the worker that owns the flow), `worker` (the flow table),
//!   `reassembly` (one byte stream per direction), `proxy` (PROXY protocol at a stream's start),
//!   `http` (HTTP/1.x request framing), `h2` (HTTP/2 cleartext streams rendered as HTTP/1.1),
//!   `filter` (health checks, allow/deny rules, sampling, rate limit), `output` (byte-exact
//!   replay to the upstream, JSON lines).
//! - What they share: `segment` and `request` (the units passed along), `http1` (the HTTP/1.x
//!   framing both `http` and `output` use, so neither imports the other), `room` (byte budgets
//!   in front of the workers and the outputs), `memory` (what allocations really cost).
//! - Beside the flow: `metrics` (labels and publishing; each room registers its own counters)
//!   and `status` (`/livez`, `/readyz`, `/healthz`, `/metrics`), which import no room, so the
//!   exporter only reads; `config` and `cli` (the settings); `pipeline` (the wiring per command
//!   and the capture loops: the one module that joins the stages, imported by `main` alone).

pub mod capture;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod filter;
pub mod h2;
pub mod http;
pub mod http1;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod proxy;
pub mod reassembly;
pub mod request;
pub mod room;
pub mod segment;
pub mod status;
pub mod worker;
