//! Named network namespaces, and running code inside them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::cmd;
use super::{feature, NetnsError, Result};

/// Where `ip netns` keeps its named namespaces (bind mounts of `/proc/PID/ns/net`).
const NETNS_DIR: &str = "/run/netns";
const PREFIX: &str = "rb";

static NEXT: AtomicUsize = AtomicUsize::new(0);
/// The first `ip netns add` on a machine makes `/run/netns` a shared mount; two doing it at
/// once can trip over each other, so this process adds one at a time.
static ADDING: Mutex<()> = Mutex::new(());

struct Inner {
    name: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Deleting the namespace deletes every interface in it (and a veth's peer with it).
        // Failure here (already gone) is not worth a panic in a destructor; `leftovers`
        // checks the result.
        let _ = cmd::ip(&["netns", "del", &self.name]);
    }
}

/// A named network namespace, deleted when the last handle (guards inside it hold one) goes.
#[derive(Clone)]
pub struct Netns(Arc<Inner>);

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Netns").field(&self.0.name).finish()
    }
}

impl Netns {
    /// Creates `rb-<purpose>-<pid>-<n>` with its loopback up. `purpose` is a short lowercase
    /// word (`client`, `node0`, …).
    pub fn new(purpose: &str) -> Result<Netns> {
        if purpose.is_empty()
            || purpose.len() > 32
            || !purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(NetnsError::Config(format!(
                "namespace purpose {purpose:?} must be 1..=32 lowercase letters or digits"
            )));
        }
        let name = format!(
            "{PREFIX}-{purpose}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        {
            let _one_at_a_time = ADDING.lock().unwrap_or_else(|p| p.into_inner());
            cmd::ip(&["netns", "add", &name]).map_err(feature("network namespaces"))?;
        }
        let ns = Netns(Arc::new(Inner { name }));
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The namespace's file, for `setns(2)`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.0.name)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        cmd::ip(&all)
    }

    /// `tc -n NAME ARGS`.
    pub fn tc(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        cmd::tc(&all)
    }

    /// `ip netns exec NAME PROGRAM`, ready for arguments (`ip netns exec` execs the program,
    /// so the child's pid is the program's own).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name()]).arg(program);
        c
    }

    /// Runs `f` on a thread inside the namespace and waits for it. Sockets made in `f` belong
    /// to the namespace for good, whichever thread uses them later. A panic in `f` is resumed
    /// here, so assertions inside it fail the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = self.path();
        let name = self.name();
        std::thread::scope(|s| {
            let h = s.spawn(move || enter(&path, name).map(|()| f()));
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Writes whole Ethernet frames to `iface` in this namespace through an AF_PACKET socket,
    /// as fast as the kernel takes them (the frames' own MACs address them). A failed or short
    /// send is an error.
    pub fn send_frames(&self, iface: &str, frames: Vec<Vec<u8>>) -> Result<()> {
        let iface = iface.to_string();
        self.run(move || -> io::Result<()> {
            use std::os::fd::{FromRawFd, OwnedFd};
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let name = std::ffi::CString::new(iface.as_str())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            // SAFETY: a NUL-terminated name that outlives the call.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(io::Error::other(format!("no interface {iface}")));
            }
            for frame in frames {
                let mut addr = libc::sockaddr_ll {
                    sll_family: libc::AF_PACKET as u16,
                    sll_protocol: 0,
                    sll_ifindex: index as i32,
                    sll_hatype: 0,
                    sll_pkttype: 0,
                    sll_halen: 6,
                    sll_addr: [0; 8],
                };
                if let Some(mac) = frame.get(..6) {
                    addr.sll_addr[..6].copy_from_slice(mac);
                }
                // SAFETY: the buffer and the address are valid for the lengths given.
                let sent = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                if sent < 0 {
                    return Err(io::Error::last_os_error());
                }
                if sent as usize != frame.len() {
                    return Err(io::Error::other(format!(
                        "sendto on {iface}: {sent} of {} bytes",
                        frame.len()
                    )));
                }
            }
            Ok(())
        })??;
        Ok(())
    }

    /// Starts `f` on a named thread inside the namespace. The handle yields `Err` if the
    /// thread could not enter it.
    pub fn spawn<T, F>(&self, thread_name: &str, f: F) -> Result<JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = self.path();
        let name = self.name().to_owned();
        Ok(std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || enter(&path, &name).map(|()| f()))?)
    }

    /// Reads a sysctl (`net.ipv4.ip_forward`) as this namespace sees it.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        self.run(|| std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_owned())
            .map_err(|source| self.sysctl_error(key, source))
    }

    /// Writes a sysctl in this namespace, without a guard.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| self.sysctl_error(key, source))
    }

    /// Sets a sysctl in this namespace; the guard puts the old value back.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<Sysctl> {
        let old = self.read_sysctl(key)?;
        self.write_sysctl(key, value)?;
        Ok(Sysctl {
            ns: self.clone(),
            key: key.to_owned(),
            old,
            armed: true,
        })
    }

    fn sysctl_error(&self, key: &str, source: io::Error) -> NetnsError {
        NetnsError::Sysctl {
            ns: self.name().to_owned(),
            key: key.to_owned(),
            source,
        }
    }

    /// The kernel's SNMP counters (`/proc/net/snmp`) as this namespace sees them, keyed
    /// `Group.Name` (`Ip.ReasmReqds`, `Udp.RcvbufErrors`, …).
    pub fn snmp(&self) -> Result<BTreeMap<String, u64>> {
        // /proc/self/net is the namespace of the process's main thread, not of this one.
        let text = self.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        Ok(parse_snmp(&text))
    }

    /// Deletes namespaces this library named for a process that no longer exists (a test
    /// killed before its guards ran). Returns their names.
    pub fn sweep_stale() -> Result<Vec<String>> {
        let mut swept = Vec::new();
        for name in list()? {
            let Some(pid) = owner_pid(&name) else {
                continue;
            };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                cmd::ip(&["netns", "del", &name])?;
                swept.push(name);
            }
        }
        Ok(swept)
    }
}

/// A sysctl set in a namespace; dropping it restores the old value.
pub struct Sysctl {
    ns: Netns,
    key: String,
    old: String,
    armed: bool,
}

impl Sysctl {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Keeps the new value for the namespace's lifetime.
    pub fn persist(mut self) {
        self.armed = false;
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self.ns.write_sysctl(&self.key, &self.old);
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &Path, name: &str) -> Result<()> {
    let err = |source| NetnsError::Enter {
        ns: name.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    // SAFETY: setns(2) on a file descriptor we own for the call's duration; CLONE_NEWNET
    // changes only this thread's network namespace (allowed in a multi-threaded process),
    // which is the point: the thread is ours and ends with the closure it runs.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') || key.starts_with('.') {
        return Err(NetnsError::Config(format!("bad sysctl key {key:?}")));
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// `/proc/net/snmp` comes in pairs of lines: `Group: Name…` then `Group: value…`.
fn parse_snmp(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((vgroup, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if group != vgroup {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{group}.{n}"), v);
            }
        }
    }
    out
}

/// Names of the namespaces `ip netns` knows.
pub(crate) fn list() -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in dir {
        out.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// The pid in a name this library made (`rb-<purpose>-<pid>-<n>`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let purpose = parts.next()?;
    let valid = !purpose.is_empty()
        && purpose
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit());
    if valid {
        pid.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_our_names() {
        assert_eq!(owner_pid("rb-client-1234-0"), Some(1234));
        assert_eq!(owner_pid("rb-node0-77-12"), Some(77));
        assert_eq!(owner_pid("rb-client-x-0"), None);
        assert_eq!(owner_pid("rb-Client-1-0"), None);
        assert_eq!(owner_pid("rb--1-0"), None);
        assert_eq!(owner_pid("rb-client-1-"), None);
        assert_eq!(owner_pid("other-client-1-0"), None);
        assert_eq!(owner_pid("rbx-client-1-0"), None);
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(sysctl_path("../etc").is_err());
        assert!(sysctl_path("").is_err());
    }

    #[test]
    fn snmp_pairs_become_named_counters() {
        let text = "Ip: Forwarding ReasmReqds\nIp: 1 7\nUdp: InDatagrams RcvbufErrors\nUdp: 12 0\n";
        let c = parse_snmp(text);
        assert_eq!(c.get("Ip.ReasmReqds"), Some(&7));
        assert_eq!(c.get("Udp.InDatagrams"), Some(&12));
        assert_eq!(c.get("Udp.RcvbufErrors"), Some(&0));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn purpose_is_validated_before_anything_runs() {
        assert!(matches!(Netns::new("Bad Name"), Err(NetnsError::Config(_))));
        assert!(matches!(Netns::new(""), Err(NetnsError::Config(_))));
    }
}
