//! Attaching the XDP program: which modes to try ([`plan_attach`], from the setting and the
//! interface's facts), trying them in order ([`run_plan`]), and the errors a failed load or
//! attach is reported with ([`XdpError`]).
//!
//! Pure apart from the `attempt` callback `run_plan` is given, so the fallback logic is tested
//! without a kernel; it knows the interface's facts (`capture::iface`) and nothing of the ring.

use std::fmt;
use std::io;

use aya::programs::XdpMode;
use rebuilder_ebpf::LoadError;

use crate::capture::iface::{IfaceError, NativeBlocker};
use crate::config::XdpModeSetting;

/// The mode an XDP program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Native: the driver runs the program before any skb exists.
    Driver,
    /// Generic (skb) mode: the stack runs it, on every interface.
    Generic,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        }
    }

    pub fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which modes to try, in order, and why driver mode is skipped if it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachPlan {
    pub modes: Vec<AttachMode>,
    /// Set when `auto` skips driver mode because a driver rule forbids it.
    pub driver_skipped: Option<String>,
}

/// Decides what to try. `auto` skips driver mode when a known rule blocks it (attaching would
/// only fail); a forced `driver` still tries, so a driver that has lifted its limit is not
/// refused by an outdated rule here (the blockers are added to the error if it fails).
pub fn plan_attach(setting: XdpModeSetting, iface: &str, blockers: &[NativeBlocker]) -> AttachPlan {
    match setting {
        XdpModeSetting::Auto if blockers.is_empty() => AttachPlan {
            modes: vec![AttachMode::Driver, AttachMode::Generic],
            driver_skipped: None,
        },
        XdpModeSetting::Auto => AttachPlan {
            modes: vec![AttachMode::Generic],
            driver_skipped: Some(explain_blockers(iface, blockers)),
        },
        XdpModeSetting::Driver => AttachPlan {
            modes: vec![AttachMode::Driver],
            driver_skipped: None,
        },
        XdpModeSetting::Generic => AttachPlan {
            modes: vec![AttachMode::Generic],
            driver_skipped: None,
        },
    }
}

fn explain_blockers(iface: &str, blockers: &[NativeBlocker]) -> String {
    blockers
        .iter()
        .map(|b| b.explain(iface))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One failed attach attempt: the errno (when the kernel gave one) and the whole message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub errno: Option<i32>,
    pub message: String,
}

impl AttemptError {
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            errno: errno_of(e),
            message: error_chain(e),
        }
    }
}

/// The interface already has an XDP program: EBUSY ("Can't replace active BPF XDP link", or a
/// program attached without a link in the same mode) or EEXIST ("Native and generic XDP can't
/// be active at the same time").
pub fn is_busy(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EBUSY | libc::EEXIST))
}

/// Where and how the program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub iface: String,
    pub mode: AttachMode,
    pub requested: XdpModeSetting,
    /// Why not driver mode, when `auto` settled for generic mode.
    pub fallback: Option<String>,
}

/// Tries the plan's modes in order with `attempt`; the first that attaches wins. A busy
/// interface stops at once (another program is there in some mode: falling back could only
/// fail too, and the operator must know).
pub fn run_plan<T>(
    plan: &AttachPlan,
    setting: XdpModeSetting,
    iface: &str,
    blockers: &[NativeBlocker],
    mut attempt: impl FnMut(AttachMode) -> Result<T, AttemptError>,
) -> Result<(T, Attached), XdpError> {
    let mut fallback = plan.driver_skipped.clone();
    let mut last = None;
    for (i, &mode) in plan.modes.iter().enumerate() {
        match attempt(mode) {
            Ok(t) => {
                return Ok((
                    t,
                    Attached {
                        iface: iface.to_string(),
                        mode,
                        requested: setting,
                        fallback,
                    },
                ))
            }
            Err(e) if is_busy(e.errno) => {
                return Err(XdpError::Busy {
                    iface: iface.to_string(),
                    mode,
                    detail: e.message,
                })
            }
            Err(e) => {
                if i + 1 < plan.modes.len() {
                    fallback = Some(format!("{mode} mode failed: {}", e.message));
                }
                last = Some((mode, e));
            }
        }
    }
    let (mode, e) = last.ok_or(XdpError::NoMode)?;
    let mut hint = String::new();
    if mode == AttachMode::Driver && !blockers.is_empty() {
        hint = format!("; {}", explain_blockers(iface, blockers));
    }
    if e.errno == Some(libc::EPERM) || e.errno == Some(libc::EACCES) {
        hint.push_str(PRIVILEGE_HINT);
    }
    Err(XdpError::Attach {
        iface: iface.to_string(),
        mode,
        error: e.message,
        hint,
    })
}

const PRIVILEGE_HINT: &str = " (XDP needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)";

/// The errno of the first OS error in `e`'s source chain.
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

/// `e` and its sources as one line, skipping a source whose text its parent already shows.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("loading the XDP program: {message}{hint}")]
    Load { message: String, hint: &'static str },
    #[error(
        "an XDP program is already attached to {iface} (is another rebuilder capturing there? \
         `ip -d link show {iface}` shows it): {mode} mode attach refused: {detail}"
    )]
    Busy {
        iface: String,
        mode: AttachMode,
        detail: String,
    },
    #[error("cannot attach the XDP program to {iface} in {mode} mode: {error}{hint}")]
    Attach {
        iface: String,
        mode: AttachMode,
        error: String,
        hint: String,
    },
    #[error("no XDP mode to try")]
    NoMode,
    #[error("XDP ring buffer: {0}")]
    Ring(String),
    #[error("XDP capture thread runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl XdpError {
    pub(super) fn load(e: &LoadError) -> Self {
        let errno = errno_of(e);
        XdpError::Load {
            message: error_chain(e),
            hint: if errno == Some(libc::EPERM) || errno == Some(libc::EACCES) {
                PRIVILEGE_HINT
            } else {
                ""
            },
        }
    }
}
