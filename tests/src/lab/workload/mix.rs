//! The mixed workload's steps: what each [`Action`] sends, how often ([`MixConfig`]), and the
//! seeded choice of the next one.

use std::time::Duration;

use super::super::ledger::RequestId;
use super::requests::{with_id, ProxyKind};
use super::HOST;
use crate::gen::http::{self, hostile};
use crate::rng::SplitMix64;

/// What one step of a connection sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A browser-like keep-alive GET.
    Get,
    /// 2 to 8 GETs and a small POST written back to back.
    Pipelined,
    /// A POST with a body of up to 64 KiB.
    SmallPost,
    /// A POST with a body of 64 KiB up to the maximum body size, log-uniformly.
    BigPost,
    /// A chunked POST with trailers, streamed 16 KiB at a time.
    Chunked,
    /// A POST that waits for `100 Continue` before its body.
    ExpectContinue,
    /// One of [`hostile::parseable`]: SQL injection, path traversal, odd header case, …
    Hostile,
}

/// How often each action comes up, out of the sum of the weights.
pub(super) const MIX: [(Action, u64); 7] = [
    (Action::Get, 60),
    (Action::Pipelined, 8),
    (Action::SmallPost, 10),
    (Action::BigPost, 3),
    (Action::Chunked, 6),
    (Action::ExpectContinue, 3),
    (Action::Hostile, 10),
];

impl Action {
    pub(super) fn pick(rng: &mut SplitMix64) -> Action {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut x = rng.below(total);
        for (a, w) in MIX {
            if x < w {
                return a;
            }
            x -= w;
        }
        Action::Get
    }
}

/// The shape of a mixed workload.
#[derive(Clone, Debug)]
pub struct MixConfig {
    /// Concurrent keep-alive connections, each a flow of its own for the whole run.
    pub connections: usize,
    /// Steps per second over all connections (a step is one action: usually one request).
    pub rate: f64,
    /// Largest body of a [`Action::BigPost`].
    pub max_body: usize,
    pub seed: u64,
    /// The PROXY protocol header each connection starts with; the rebuilders must replay
    /// every request with the header's source in [`CLIENT_IP_HEADER`].
    pub proxy: ProxyKind,
    /// Load balancer health checks per second (0: none), each on a connection of its own; the
    /// rebuilders must filter every one.
    pub health_checks: f64,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            connections: 8,
            rate: 100.0,
            max_body: 4 << 20,
            seed: 1,
            proxy: ProxyKind::Off,
            health_checks: 0.0,
        }
    }
}

/// One step's requests and how they are written.
pub(super) struct Step {
    pub(super) batch: Vec<Vec<u8>>,
    pub(super) pieces: Option<(usize, Duration)>,
}

/// Builds the requests of `action`, tagged with ids from `next_id`.
pub(super) fn step(
    action: Action,
    rng: &mut SplitMix64,
    max_body: usize,
    mut next_id: impl FnMut() -> RequestId,
) -> Step {
    let n = rng.next_u32();
    let mut tagged = |raw: Vec<u8>| with_id(&raw, next_id());
    let seed = rng.next_u64();
    match action {
        Action::Get => Step {
            batch: vec![tagged(http::get(HOST, &format!("/items/{}", n % 1000)))],
            pieces: None,
        },
        Action::Pipelined => {
            let k = rng.range_inclusive(2, 8) as usize;
            let mut batch: Vec<Vec<u8>> = (0..k)
                .map(|i| tagged(http::get(HOST, &format!("/pipelined/{n}/{i}"))))
                .collect();
            let len = rng.range_inclusive(1, 4096) as usize;
            batch.push(tagged(http::post(HOST, "/pipelined/post", len, seed)));
            Step {
                batch,
                pieces: None,
            }
        }
        Action::SmallPost => {
            let len = rng.range_inclusive(1, 64 << 10) as usize;
            Step {
                batch: vec![tagged(http::post(HOST, "/form", len, seed))],
                pieces: None,
            }
        }
        Action::BigPost => {
            let lo = (64u64 << 10).min(max_body as u64);
            let hi = (max_body as u64).max(lo);
            // Log-uniform: as many uploads of 100 KB as of 1 MB, so big ones stay rare in bytes.
            let (a, b) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
            let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let len = ((a + (b - a) * x).exp() as u64).clamp(lo, hi) as usize;
            Step {
                batch: vec![tagged(http::post(HOST, "/upload", len, seed))],
                pieces: None,
            }
        }
        Action::Chunked => {
            let chunks: Vec<usize> = (0..rng.range_inclusive(1, 6))
                .map(|_| rng.range_inclusive(1, 80_000) as usize)
                .collect();
            Step {
                batch: vec![tagged(http::chunked_post(HOST, "/stream", &chunks, seed))],
                pieces: Some((16 * 1024, Duration::from_millis(1))),
            }
        }
        Action::ExpectContinue => {
            let len = rng.range_inclusive(1, 256 << 10) as usize;
            Step {
                batch: vec![tagged(http::expect_continue_post(
                    HOST,
                    "/continue",
                    len,
                    seed,
                ))],
                pieces: None,
            }
        }
        Action::Hostile => {
            let all = hostile::parseable(HOST);
            let i = rng.below(all.len() as u64) as usize;
            let raw = all.into_iter().nth(i).unwrap_or_default();
            Step {
                batch: vec![tagged(raw)],
                pieces: None,
            }
        }
    }
}
