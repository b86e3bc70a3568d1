//! Running the real `rebuilder` binary from tests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of the `rebuilder` binary: `$REBUILDER_BIN` when set, else the one cargo builds for the
/// profile these tests were built with (built here on first use, so a plain `cargo test` works).
///
/// # Panics
/// When the binary cannot be built: a test cannot go on without it.
pub fn rebuilder_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("REBUILDER_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root()).args([
            "build",
            "--quiet",
            "-p",
            "rebuilder",
            "--bin",
            "rebuilder",
        ]);
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build the rebuilder binary");
        assert!(
            status.success(),
            "building the rebuilder binary failed: {status}"
        );
        // Tests run from target/<profile>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary is in target/<profile>/deps");
        let bin = dir.join("rebuilder");
        assert!(
            bin.exists(),
            "built rebuilder binary not found at {}",
            bin.display()
        );
        bin
    })
    .clone()
}

/// A running `rebuilder`, killed when dropped (so a failing test leaves nothing behind). Its
/// output is read continuously by two threads, so a chatty process never blocks on a full pipe.
pub struct Running {
    child: Option<Child>,
    pub name: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn drain(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

impl Running {
    /// Starts `rebuilder ARGS` with stdout and stderr captured.
    pub fn spawn<I, S>(args: I) -> std::io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Self::spawn_cmd(Command::new(rebuilder_bin()).args(args))
    }

    /// Starts a prepared command (e.g. wrapped in `ip netns exec`).
    pub fn spawn_cmd(cmd: &mut Command) -> std::io::Result<Self> {
        let name = format!("{cmd:?}");
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (stdout, stderr) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(drain(o, Arc::clone(&stdout)));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(drain(e, Arc::clone(&stderr)));
        }
        Ok(Self {
            child: Some(child),
            name,
            stdout,
            stderr,
            readers,
        })
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `timeout` for the process to end; kills it after that. Returns its exit
    /// status and everything it wrote.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("child");
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap_or_else(|e| e.into_inner()));
        let stderr =
            String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()))
                .into_owned();
        Finished {
            status,
            stdout,
            stderr,
            name: self.name.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A process that ended (or was killed at its deadline: `status` is `None`).
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub name: String,
}

impl Finished {
    /// Panics with the process's output unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        match self.status {
            Some(s) if s.success() => self,
            Some(s) => panic!("{} exited with {s}\nstderr:\n{}", self.name, self.stderr),
            None => panic!(
                "{} did not finish in time\nstderr:\n{}",
                self.name, self.stderr
            ),
        }
    }

    /// A number from the summary's line `label   N ...`.
    pub fn summary_value(&self, label: &str) -> Option<u64> {
        self.stderr.lines().find_map(|l| {
            let rest = l.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }
}

/// Runs `rebuilder ARGS` to completion (bounded by `timeout`).
pub fn run_rebuilder<I, S>(args: I, timeout: Duration) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Running::spawn(args)
        .expect("cannot start rebuilder")
        .wait(timeout)
}

/// A scratch directory for one test, removed when dropped (also when the test fails).
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `rebuilder-NAME-PID` under the system's temporary directory, empty.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rebuilder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch directory {}: {e}", dir.display());
        }
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
