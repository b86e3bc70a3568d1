//! Attaching for real: native XDP on a 9000-MTU veth (only a multi-buffer program may), through
//! a bpf_link, which the kernel releases when the owning process dies however it dies.
//!
//! Needs root and `ip` (iproute2). Everything happens inside a network namespace the test
//! creates and deletes; no traffic is sent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use rebuilder_ebpf::{attach, load, Config};

const CHILD_ENV: &str = "REBUILDER_XDP_ATTACH_IFACE";

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("prerequisite missing: cannot run `ip` (Debian package iproute2): {e}")
    });
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted (with its veths) on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => Netns(name),
            Ok(o) => panic!(
                "prerequisite missing: `ip netns add` failed (needs root): {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("prerequisite missing: cannot run `ip` (iproute2): {e}"),
        }
    }

    fn ip(&self, args: &[&str]) -> String {
        ip(&[&["-n", &self.0][..], args].concat())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the child on drop, so a failing assertion does not leave it attached.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The attaching process: run by `native_attach_...` inside the namespace, never on its own.
#[test]
#[ignore = "child process of native_attach_to_jumbo_veth_detaches_when_the_process_dies"]
fn attach_child() {
    let iface = std::env::var(CHILD_ENV).expect("run only by the parent test");
    let mut ebpf = load(&Config::default()).expect("load");
    let link = match attach(&mut ebpf, &iface, XdpMode::Driver) {
        Ok(link) => link,
        Err(e) => {
            println!("ATTACH_FAILED {e} {e:?}");
            std::process::exit(3);
        }
    };
    // `attach` returns only a bpf_link; it is held until this process is killed.
    println!("ATTACHED bpf_link");
    // The parent kills this process; give up after a while should the parent be gone.
    std::thread::sleep(Duration::from_secs(60));
    drop(link);
    std::process::exit(4);
}

#[test]
fn native_attach_to_jumbo_veth_detaches_when_the_process_dies() {
    let ns = Netns::new(format!("rbxdp{}", std::process::id()));
    ns.ip(&[
        "link", "add", "rbx0", "mtu", "9000", "type", "veth", "peer", "name", "rbx1", "mtu", "9000",
    ]);
    ns.ip(&["link", "set", "rbx0", "up"]);
    ns.ip(&["link", "set", "rbx1", "up"]);

    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("utf-8 path");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            exe,
            "--exact",
            "attach_child",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "rbx0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the attaching process");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test attach_child ... " on the same line first.
            if let Some(at) = line.find("ATTACH") {
                if tx.send(line[at..].to_string()).is_err() {
                    break;
                }
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the attaching process said nothing within 60 s");
    assert_eq!(line, "ATTACHED bpf_link", "attach result");

    // Native mode: `ip` shows "xdp", not "xdpgeneric".
    let shown = ns.ip(&["-d", "link", "show", "rbx0"]);
    assert!(shown.contains("mtu 9000"), "{shown}");
    assert!(
        shown.contains(" xdp/id:") || shown.contains("prog/xdp id"),
        "not attached: {shown}"
    );
    assert!(
        !shown.contains("xdpgeneric"),
        "generic, not native: {shown}"
    );

    // SIGKILL: no destructor runs, only the kernel closing the process's descriptors.
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = ns.ip(&["-d", "link", "show", "rbx0"]);
        if !shown.contains("xdp") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still attached 10 s after the process died: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
