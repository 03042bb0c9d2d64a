//! `--network lab`: the whole run in a lab network of its own (see
//! docs/network.md and the `netlab` crate).
//!
//! crasher re-executes itself as
//! `setpriv --pdeathsig KILL unshare --net --pid --mount-proc --fork --kill-child=KILL crasher ARGS`:
//! the inner crasher is PID 1 of a new PID namespace and lives in a new
//! network namespace (the *lab*), where it builds the bridge, the sink and
//! the feeders run, and the node namespaces of the workers hang off. When
//! the inner crasher dies, however it dies, the kernel kills every other
//! process of its PID namespace, so every namespace of the run goes with
//! them; when the outer crasher dies (even by SIGKILL), the parent-death
//! signals kill `unshare` and then the inner crasher. The outer crasher
//! only forwards signals ([`forwarded`]) to the inner crasher and returns
//! its exit code.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::exit;

/// The outer crasher of a lab run catches every signal the inner one
/// treats as an interrupt (`soak::signals::terminating_signals`: SIGINT,
/// SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 ... and the real-time signals) and
/// forwards it to the inner crasher alone, never to `unshare` (which dies
/// of SIGHUP, SIGUSR1 …, and its death SIGKILLs the inner crasher before
/// it can tear down). The inner crasher is PID 1 of its PID namespace, and
/// the kernel drops every signal PID 1 has no handler for: a signal it
/// does not watch (or one nix cannot name, a real-time signal) is
/// forwarded as SIGTERM (a graceful teardown, which is what its default
/// action would have asked for), and a signal that arrives before it
/// watches any is held until it does.
fn forwarded() -> Vec<i32> {
    crate::soak::signals::terminating_signals()
}

/// How often a signal held for the inner crasher is tried again.
const FORWARD_RETRY: Duration = Duration::from_millis(100);

/// Set (to `1`) in the inner crasher's environment.
pub const INNER_VAR: &str = "CRASHER_NETLAB_INNER";

/// Which network a run uses.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Every process on 127.0.0.1 of the host (no network faults).
    #[default]
    Loopback,
    /// A private lab network: one namespace per worker on a bridge.
    Lab,
}

/// `[network]` in a profile.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// `loopback` (default) or `lab`.
    #[serde(default)]
    pub mode: NetworkMode,
}

static INNER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is the inner crasher of a lab run.
pub fn is_inner() -> bool {
    INNER.load(std::sync::atomic::Ordering::SeqCst)
        || std::env::var_os(INNER_VAR).is_some_and(|v| v == "1")
}

/// Decides what a soak does about its network before anything starts:
/// `Some(code)` to exit with (a usage or environment error, or the inner
/// run's code after re-executing in a lab), `None` to go on here.
pub fn enter(mode: NetworkMode, net_faults: &[&str]) -> Option<ExitCode> {
    if mode != NetworkMode::Lab {
        if !net_faults.is_empty() {
            eprintln!(
                "crasher: network faults ({}) need --network lab (or [network] mode = \"lab\" in the profile)",
                net_faults.join(", ")
            );
            return Some(ExitCode::from(exit::USAGE));
        }
        return None;
    }
    if is_inner() {
        // Remembered here, and not passed on to the run's processes.
        INNER.store(true, std::sync::atomic::Ordering::SeqCst);
        std::env::remove_var(INNER_VAR);
        return None;
    }
    if let Err(e) = netlab::preflight() {
        eprintln!("crasher: --network lab is not available here: {e}");
        return Some(ExitCode::from(exit::USAGE));
    }
    Some(reexec())
}

fn reexec() -> ExitCode {
    let fail = |e: String| {
        eprintln!("crasher: cannot start the lab run: {e}");
        ExitCode::from(exit::USAGE)
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find crasher's own path: {e}")),
    };
    let (Some(setpriv), Some(unshare)) = (netlab::which("setpriv"), netlab::which("unshare"))
    else {
        return fail("setpriv or unshare not found (install util-linux)".into());
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e.to_string()),
    };
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut cmd = tokio::process::Command::new(setpriv);
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(unshare)
            .args([
                "--net",
                "--pid",
                "--mount-proc",
                "--fork",
                "--kill-child=KILL",
                "--",
            ])
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(INNER_VAR, "1")
            .process_group(0)
            .kill_on_drop(true);
        // Watched before the lab exists, so no signal's default action
        // can end this process first.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for sig in forwarded() {
            let Ok(mut stream) = signal(SignalKind::from_raw(sig)) else {
                return fail(format!("cannot watch signal {sig}"));
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
        }
        // The current-thread runtime spawns from this (main) thread, the
        // thread the parent-death signal is tied to.
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(e.to_string()),
        };
        // `setpriv` executes `unshare`, whose child is the inner crasher.
        let unshare = child.id();
        let mut held = VecDeque::new();
        loop {
            tokio::select! {
                st = child.wait() => {
                    return match st {
                        Ok(st) => ExitCode::from(
                            st.code()
                                .and_then(|c| u8::try_from(c).ok())
                                .unwrap_or(exit::UNKNOWN),
                        ),
                        Err(e) => fail(e.to_string()),
                    };
                }
                Some(sig) = rx.recv() => held.push_back(sig),
                _ = tokio::time::sleep(FORWARD_RETRY), if !held.is_empty() => {}
            }
            while let Some(&sig) = held.front() {
                if !unshare.is_some_and(|p| forward(p, sig)) {
                    break;
                }
                held.pop_front();
            }
        }
    })
}

/// Sends `sig` to the inner crasher, the child of `unshare` (pid
/// `unshare`), or SIGTERM when it has no handler for `sig` (see
/// [`forwarded`]). False when that cannot be done yet: the inner crasher
/// is not there, or watches neither signal.
fn forward(unshare: u32, sig: i32) -> bool {
    let sig = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
    let Some(inner) = child_of(unshare) else {
        return false;
    };
    let Some(caught) = caught_signals(inner) else {
        return false;
    };
    let watched = |s: Signal| caught & (1u64 << (s as i32 - 1)) != 0;
    let to = if watched(sig) {
        sig
    } else if watched(Signal::SIGTERM) {
        Signal::SIGTERM
    } else {
        return false;
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(inner).unwrap_or(i32::MAX));
    nix::sys::signal::kill(pid, to).is_ok()
}

/// A live child of process `parent` (`unshare` has exactly one).
fn child_of(parent: u32) -> Option<u32> {
    let listed = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().find_map(|p| p.parse().ok()));
    listed.or_else(|| {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|&p| procs::stat::stat(p).is_some_and(|s| s.ppid == parent && !s.dead()))
    })
}

/// The signals process `pid` has handlers for (`SigCgt` of its status:
/// bit N-1 is signal N).
fn caught_signals(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::profile::{Profile, BUILTIN};

    #[test]
    fn a_profile_can_ask_for_a_lab() {
        let lab = format!("{}\n[network]\nmode = \"lab\"\n", BUILTIN[0].1);
        assert_eq!(
            Profile::parse(&lab, "x").unwrap().network.mode,
            NetworkMode::Lab
        );
        for (name, _) in BUILTIN {
            let p = Profile::load(name).unwrap();
            assert_eq!(p.network.mode, NetworkMode::Loopback, "{name}");
        }
        let bad = format!("{}\n[network]\nmode = \"wan\"\n", BUILTIN[0].1);
        let err = Profile::parse(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("wan"), "{err}");
    }

    #[test]
    fn network_words_without_a_lab_are_refused() {
        assert!(enter(NetworkMode::Loopback, &[]).is_none());
        assert!(enter(NetworkMode::Loopback, &["partition"]).is_some());
    }
}
