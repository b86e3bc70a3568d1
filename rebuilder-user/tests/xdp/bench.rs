//! The bench of the XDP end-to-end tests (`xdp.rs`, `xdp_check.rs`): a network namespace with
//! a veth pair, the rebuilder binary started inside it, and waiting on it with a time limit.
//! Built on the shared topology library (`rebuilder_tests::netns`) and its processes
//! (`rebuilder_tests::process`); what is XDP-specific lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rebuilder_tests::netns::{self, Link, Netns, Veth};
use rebuilder_tests::process::{Finished, Running};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_rebuilder");
pub(crate) const STATUS: &str = "127.0.0.1:9479";

/// A network namespace (from the shared topology library) holding a veth pair: `rx` for
/// rebuilder, `tx` for the sender. Dropping it deletes the pair and the namespace; it also
/// owns a scratch directory, removed with it.
pub(crate) struct Bench {
    /// Held for its `Drop`; the namespace goes with the last guard inside it.
    _veth: Veth,
    pub(crate) ns: Netns,
    pub(crate) rx: String,
    pub(crate) tx: String,
    pub(crate) dir: PathBuf,
}

impl Bench {
    pub(crate) fn new(mtu: u32) -> Self {
        netns::preflight().unwrap_or_else(|e| panic!("prerequisite missing: {e}"));
        let ns = Netns::new("xdp").unwrap_or_else(|e| panic!("prerequisite missing: {e}"));
        let (rx, tx) = ("rbxrx0".to_string(), "rbxtx0".to_string());
        let veth = Veth::new(&ns, &rx, &ns, &tx).unwrap_or_else(|e| panic!("{e}"));
        for m in veth.set_mtu(mtu).unwrap_or_else(|e| panic!("{e}")) {
            m.persist();
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rebuilder-xdp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Bench {
            _veth: veth,
            ns,
            rx,
            tx,
            dir,
        }
    }

    pub(crate) fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether an XDP program is attached to the rebuilder end (`ip` prints `xdp`,
    /// `xdpgeneric` or `xdpdrv` and a `prog/xdp` line).
    pub(crate) fn xdp_shown(&self) -> Option<String> {
        let shown = self.ip(&["-d", "link", "show", &self.rx]);
        shown.contains("xdp").then_some(shown)
    }

    /// Writes whole Ethernet frames to the sender end of the veth pair.
    pub(crate) fn send_frames(&self, frames: Vec<Vec<u8>>) {
        self.ns
            .send_frames(&self.tx, frames)
            .unwrap_or_else(|e| panic!("sending frames on {}: {e}", self.tx));
    }

    /// The body of `GET path` from the namespace's loopback status server; None while it does
    /// not answer 200.
    pub(crate) fn http_get(&self, path: &str) -> Option<String> {
        let addr: SocketAddr = STATUS.parse().ok()?;
        match netns::http_get(&self.ns, addr, path, Duration::from_secs(2)) {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Starts the rebuilder binary inside the namespace (`ip netns exec` execs it, so the
    /// child is rebuilder itself), killed when the handle drops.
    pub(crate) fn spawn(&self, args: &[&str]) -> Running {
        Running::spawn_cmd(self.ns.command(BIN).args(args))
            .expect("spawn rebuilder through ip netns exec")
    }

    /// A bridge has no native XDP (no `ndo_bpf`): the real kernel refuses driver mode, which
    /// is what `auto`'s fallback and a forced `driver` are tested against.
    pub(crate) fn add_bridge(&self) -> String {
        let name = "rbxbr0".to_string();
        self.ns
            .ip(&["link", "add", &name, "type", "bridge"])
            .unwrap_or_else(|e| {
                panic!("prerequisite missing: cannot create a bridge device (kernel bridge support): {e}")
            });
        Link::new(&self.ns, &name)
            .up()
            .unwrap_or_else(|e| panic!("{e}"));
        name
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits up to `limit` for the process to end (failing, with its stderr, after that) and
/// returns its status and output.
pub(crate) fn wait_exit(reb: Running, limit: Duration) -> (ExitStatus, Finished) {
    let fin = reb.wait(limit);
    match fin.status {
        Some(s) => (s, fin),
        None => panic!(
            "rebuilder still running after {limit:?}; stderr:\n{}",
            fin.stderr
        ),
    }
}

pub(crate) fn stdout(f: &Finished) -> String {
    String::from_utf8_lossy(&f.stdout).into_owned()
}

/// Polls `f` every 50 ms until it returns Some, failing with `what` (and rebuilder's stderr)
/// after `limit`.
pub(crate) fn wait_for<T>(
    limit: Duration,
    what: &str,
    reb: &mut Running,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if !reb.alive() {
            panic!(
                "rebuilder exited while waiting for {what}; stderr:\n{}",
                reb.stderr_so_far()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; stderr:\n{}",
            reb.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
