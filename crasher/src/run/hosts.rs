//! `--hosts FILE`: workers on other machines over SSH (see docs/hosts.md).
//!
//! One OpenSSH master connection per host (`ssh -M -N -S RUN/ssh/N`,
//! `BatchMode=yes`), started when the run starts and closed with
//! `ssh -O exit` at teardown; every remote process and every signal is a
//! session on it, so a fault is a round trip, not a new handshake. crasher
//! drives the `ssh` binary itself (no `openssh` crate): the local ssh
//! processes are then ordinary [`procs::Proc`]s, with their process group,
//! log file, reaping, kill-on-drop and parent-death signal, like every
//! other child of a run, and the user's own ssh setup (agent, config,
//! known hosts) applies unchanged.
//!
//! A remote process runs under [`WRAPPER`], a `sh -c` one-liner: it starts
//! the program with `setsid` (its own session and process group) carrying
//! `CRASHER_RUN_ID`, in `WORKDIR/RUN_ID`, writes its process-group id to
//! `WORKDIR/RUN_ID/pids/NAME`, and kills that group with SIGKILL when its
//! SSH session's stdin reaches end-of-file, which happens when the local
//! `ssh` client, the master connection or crasher itself dies (the local
//! client's stdin is a pipe crasher holds open and never writes). Signals
//! go to the remote process group by a `kill` over the master connection.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use netlab::{End, Faults};
use nix::sys::signal::Signal;
use procs::{Proc, RUN_ID_VAR};

/// The hosts file, as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    /// The control machine's address as the hosts reach it: the sink
    /// listens there (`{sink}`, `{host}` of the sink and feeders).
    pub control_address: Ipv4Addr,
    /// Host names in the order workers are placed on them: worker N goes
    /// on `placement[N % len]`. Default: every host, in file order.
    #[serde(default)]
    pub placement: Vec<String>,
    /// The host the sink runs on (its name). Default: the control machine.
    /// Its output is mirrored back into the run directory (see
    /// `run::mirror`).
    pub sink: Option<String>,
    /// The host every feeder runs on (its name). Default: the control
    /// machine. Their input files are copied there, their status files
    /// mirrored back.
    pub feeders: Option<String>,
    /// The hosts (`[[host]]`).
    #[serde(default)]
    pub host: Vec<HostEntry>,
}

/// One `[[host]]` of the hosts file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// The host's name in placement, messages and `crasher status`.
    pub name: String,
    /// What `ssh` connects to (`HOST` or `USER@HOST`).
    pub destination: String,
    /// The SSH port (`ssh -p`).
    pub port: Option<u16>,
    /// The remote user (`ssh -l`).
    pub user: Option<String>,
    /// The private key (`ssh -i`, with `IdentitiesOnly=yes`); relative to
    /// the hosts file's directory.
    pub identity: Option<PathBuf>,
    /// A known_hosts file holding this host's key (`UserKnownHostsFile`,
    /// with `StrictHostKeyChecking=yes`); relative to the hosts file's
    /// directory. Default: the user's own known hosts.
    pub known_hosts: Option<PathBuf>,
    /// The address the host's workers listen on and are reached at.
    /// Default: the destination's host part, when it is an IPv4 address.
    pub address: Option<Ipv4Addr>,
    /// An absolute directory on the host; the run's state lives in
    /// `WORKDIR/RUN_ID` there.
    pub workdir: PathBuf,
    /// The `crasher` binary's path on the host, where the profile says
    /// `{crasher}`. Default: the same absolute path as on this machine.
    pub crasher: Option<PathBuf>,
    /// More `ssh` arguments, put before the destination (e.g.
    /// `["-F", "/dev/null"]`).
    #[serde(default)]
    pub ssh_args: Vec<String>,
    /// Environment variables for every process started on the host (e.g.
    /// `CRASHER_NATS_SERVER`); ssh passes none of this machine's.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

/// A bad hosts file, with the file and the field.
#[derive(Debug)]
pub struct HostsError(String);

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostsError {}

/// A parsed, checked hosts file.
#[derive(Debug, Clone)]
pub struct HostsConfig {
    /// The control machine's address.
    pub control: Ipv4Addr,
    /// The hosts, paths resolved, addresses known.
    pub hosts: Vec<HostSpec>,
    /// Index into `hosts` per placement slot.
    pub placement: Vec<usize>,
    /// Index into `hosts` of the sink's host (`None`: the control machine).
    pub sink: Option<usize>,
    /// Index into `hosts` of the feeders' host (`None`: the control
    /// machine).
    pub feeders: Option<usize>,
}

/// One checked host.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The `ssh` destination.
    pub destination: String,
    /// Options common to every ssh invocation for it (before the
    /// destination).
    pub ssh_options: Vec<String>,
    /// The SSH port (`port`, default 22): exempt from network faults.
    pub ssh_port: u16,
    /// Working directory on the host.
    pub workdir: PathBuf,
    /// `crasher` on the host, if not at the local path.
    pub crasher: Option<PathBuf>,
    /// `NAME=VALUE` for every process started there.
    pub env: Vec<String>,
}

impl HostsConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<HostsConfig, HostsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HostsError(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        HostsConfig::parse(&text, &path.display().to_string(), base)
    }

    /// Parses a hosts file's text; `origin` names it in errors, relative
    /// paths are taken from `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<HostsConfig, HostsError> {
        let file: HostsFile =
            toml::from_str(text).map_err(|e| HostsError(format!("{origin}: {e}")))?;
        let err = |i: usize, name: &str, field: &str, msg: String| {
            HostsError(format!(
                "{origin}: host[{i}] ({name}): field `{field}`: {msg}"
            ))
        };
        if file.host.is_empty() {
            return Err(HostsError(format!(
                "{origin}: no [[host]]: a hosts file lists at least one host"
            )));
        }
        let mut hosts: Vec<HostSpec> = Vec::new();
        for (i, h) in file.host.iter().enumerate() {
            let name = h.name.as_str();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(err(
                    i,
                    name,
                    "name",
                    "must be non-empty, letters, digits, `-`, `_`, `.`".into(),
                ));
            }
            if hosts.iter().any(|o| o.name == name) {
                return Err(err(i, name, "name", "used by an earlier host".into()));
            }
            if h.destination.is_empty() || h.destination.starts_with('-') {
                return Err(err(
                    i,
                    name,
                    "destination",
                    "must be HOST or USER@HOST".into(),
                ));
            }
            let host_part = h.destination.rsplit('@').next().unwrap_or_default();
            let address = match h.address {
                Some(a) => a,
                None => host_part.parse().map_err(|_| {
                    err(
                        i,
                        name,
                        "address",
                        format!(
                        "missing, and the destination's host `{host_part}` is not an IPv4 address: \
                         say where its workers listen (address = \"A.B.C.D\")"
                    ),
                    )
                })?,
            };
            if !h.workdir.is_absolute() {
                return Err(err(
                    i,
                    name,
                    "workdir",
                    format!("{} is not an absolute path", h.workdir.display()),
                ));
            }
            if let Some(c) = &h.crasher {
                if !c.is_absolute() {
                    return Err(err(
                        i,
                        name,
                        "crasher",
                        format!("{} is not an absolute path", c.display()),
                    ));
                }
            }
            let mut opts: Vec<String> = h.ssh_args.clone();
            if let Some(p) = h.port {
                opts.extend(["-p".into(), p.to_string()]);
            }
            if let Some(u) = &h.user {
                opts.extend(["-l".into(), u.clone()]);
            }
            if let Some(id) = &h.identity {
                let id = base.join(id);
                if !id.is_file() {
                    return Err(err(
                        i,
                        name,
                        "identity",
                        format!("{} is not a file", id.display()),
                    ));
                }
                opts.extend([
                    "-i".into(),
                    id.display().to_string(),
                    "-o".into(),
                    "IdentitiesOnly=yes".into(),
                ]);
            }
            if let Some(k) = &h.known_hosts {
                let k = base.join(k);
                if !k.is_file() {
                    return Err(err(
                        i,
                        name,
                        "known_hosts",
                        format!("{} is not a file", k.display()),
                    ));
                }
                opts.extend([
                    "-o".into(),
                    format!("UserKnownHostsFile={}", k.display()),
                    "-o".into(),
                    "StrictHostKeyChecking=yes".into(),
                ]);
            }
            opts.extend(["-o".into(), "BatchMode=yes".into()]);
            let mut env = Vec::new();
            for (k, v) in &h.env {
                let ok = !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(err(i, name, "env", format!("{k:?} is not a variable name")));
                }
                env.push(format!("{k}={v}"));
            }
            hosts.push(HostSpec {
                name: name.to_owned(),
                address,
                destination: h.destination.clone(),
                ssh_options: opts,
                ssh_port: h.port.unwrap_or(22),
                workdir: h.workdir.clone(),
                crasher: h.crasher.clone(),
                env,
            });
        }
        let placement = if file.placement.is_empty() {
            (0..hosts.len()).collect()
        } else {
            file.placement
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    hosts.iter().position(|h| &h.name == n).ok_or_else(|| {
                        HostsError(format!(
                            "{origin}: field `placement`[{i}]: no host named `{n}`"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let place = |field: &str, name: &Option<String>| -> Result<Option<usize>, HostsError> {
            name.as_ref()
                .map(|n| {
                    hosts.iter().position(|h| &h.name == n).ok_or_else(|| {
                        HostsError(format!("{origin}: field `{field}`: no host named `{n}`"))
                    })
                })
                .transpose()
        };
        let sink = place("sink", &file.sink)?;
        let feeders = place("feeders", &file.feeders)?;
        Ok(HostsConfig {
            control: file.control_address,
            hosts,
            placement,
            sink,
            feeders,
        })
    }
}

/// The remote wrapper (run as `sh -c WRAPPER crasher-wrap DIR NAME RUN_ID
/// PROGRAM ARGS...`): see the module doc.
pub const WRAPPER: &str = r#"d=$1; n=$2; r=$3; shift 3
mkdir -p "$d/pids" "$d/state" && cd "$d" || exit 125
exec 3<&0
CRASHER_RUN_ID=$r setsid "$@" </dev/null 2>&1 &
p=$!
echo "$p" >"$d/pids/$n"
( while read -r _; do :; done <&3; kill -KILL "-$p" || kill -KILL "$p" ) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"; s=$?
kill "$w" 2>/dev/null
rm -f "$d/pids/$n"
exit "$s""#;

/// The run's nftables table on the hosts (`inet crasher_RUNID`, the run
/// id's characters other than letters and digits made `_`): network faults
/// of the run live there and nowhere else.
pub fn table_name(run_id: &str) -> String {
    let id: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("crasher_{id}")
}

/// The remote command of a host's control shell: a `sh` reading requests
/// from the session's stdin; when that ends (crasher closed it, or crasher,
/// its ssh client or the master connection died), the run's nftables
/// table `table` is deleted and every lossyfs mount under `dir/state/` (the
/// run's directory there) is unmounted, so no fault outlives the run.
pub fn control_shell_script(table: &str, dir: &Path) -> String {
    let state = shell_quote(&format!("{}/state/", dir.display()));
    format!(
        "sh; nft delete table inet {} >/dev/null 2>&1; \
         for m in $(awk -v p={state} 'index($2,p)==1 && $3==\"fuse.lossyfs\" {{print $2}}' /proc/mounts); do \
         fusermount3 -u -q \"$m\" 2>/dev/null || umount -l \"$m\"; done >/dev/null 2>&1; exit 0",
        shell_quote(table)
    )
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A host with its master connection, as the run's processes use it.
#[derive(Debug)]
pub struct Remote {
    /// The checked host.
    pub spec: HostSpec,
    /// The master's control socket.
    control: PathBuf,
    /// The run's directory on the host (`WORKDIR/RUN_ID`).
    pub dir: PathBuf,
    /// The run's nftables table there (`inet TABLE`, see [`table_name`]):
    /// deleted when the control shell's session ends.
    table: String,
    /// A long-lived `sh` on the host, reading signal scripts from its
    /// stdin (see [`ControlShell`]); `None` once it failed, then every
    /// signal is a session of its own.
    shell: Mutex<Option<ControlShell>>,
}

/// A `sh` on a host that runs one script per request, in a subshell, and
/// answers `@done N`: a signal is then one write and one read on a session
/// that is already open, not a new session with its login shell (bash
/// sources `~/.bashrc` for each). Its local ssh client is in its own
/// process group (not registered: pause-the-world never stops it), killed
/// and reaped on drop; if crasher dies, its stdin ends and so does the
/// remote `sh`.
#[derive(Debug)]
struct ControlShell {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    seq: u64,
}

impl ControlShell {
    fn start(r: &Remote) -> Option<ControlShell> {
        let mut c = r.ssh();
        c.arg(format!(
            "exec sh -c {}",
            shell_quote(&control_shell_script(&r.table, &r.dir))
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().ok()?;
        let stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ssh-control-shell".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        let mut shell = ControlShell {
            child,
            stdin,
            lines,
            seq: 0,
        };
        shell.run("true", SIGNAL_TIMEOUT).ok()?;
        Some(shell)
    }

    /// Runs `script` in a subshell there; once it finished, its exit
    /// status and its stderr (lines travel joined by `\x1f`). Err when
    /// the shell did not answer.
    fn run(&mut self, script: &str, timeout: Duration) -> Result<(i32, String), String> {
        use std::io::Write;
        self.seq += 1;
        let done = format!("@done {} ", self.seq);
        // The assignment's status is the command substitution's: the
        // script's. Its stdout is dropped, its stderr comes back.
        let line = format!(
            "e=$( ( {script}\n) </dev/null 2>&1 >/dev/null ); s=$?; \
             printf '{done}%s %s\\n' \"$s\" \"$(printf %s \"$e\" | tr '\\n' '\\037')\"\n"
        );
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("control shell: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(&done) {
                        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                        let msg = msg.replace('\x1f', "\n");
                        return Ok((code.parse().unwrap_or(-1), msg.trim().to_owned()));
                    }
                }
                Err(_) => return Err("control shell did not answer".into()),
            }
        }
    }
}

impl Drop for ControlShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Remote {
    /// `ssh` through the master, ready for a remote command line.
    pub fn ssh(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-S")
            .arg(&self.control)
            .args(["-o", "ControlMaster=no", "-T"])
            .args(&self.spec.ssh_options)
            .arg("--")
            .arg(&self.spec.destination);
        c
    }

    /// The remote command line that runs `program args` as process `name`
    /// of run `run_id` under [`WRAPPER`].
    pub fn wrapped(&self, name: &str, run_id: &str, program: &Path, args: &[String]) -> String {
        let mut words = vec![
            "exec".to_owned(),
            "sh".into(),
            "-c".into(),
            shell_quote(WRAPPER),
            "crasher-wrap".into(),
            shell_quote(&self.dir.display().to_string()),
            shell_quote(name),
            shell_quote(run_id),
        ];
        if !self.spec.env.is_empty() {
            // `env` executes the program: its pid is still the group's.
            words.push("env".into());
            words.extend(self.spec.env.iter().map(|kv| shell_quote(kv)));
        }
        words.push(shell_quote(&program.display().to_string()));
        words.extend(args.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }

    /// Runs `script` on the host through the master; its exit status, or
    /// why it could not run.
    pub fn run(&self, script: &str, timeout: Duration) -> Result<(), String> {
        // Run by sh whatever the user's login shell is.
        let mut c = self.ssh();
        c.arg(format!("exec sh -c {}", shell_quote(script)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        self.session_result(c, timeout)
    }

    /// Copies the local file `from` to `to` on the host (its directory
    /// made, the file written under a temporary name and renamed, so a
    /// half copy never has the final name), through the master connection.
    pub fn upload(&self, from: &Path, to: &Path, timeout: Duration) -> Result<(), String> {
        let file = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
        let dir = to.parent().unwrap_or(Path::new("/"));
        let part = format!("{}.part", to.display());
        let script = format!(
            "mkdir -p {d} && cat >{p} && mv -f {p} {t}",
            d = shell_quote(&dir.display().to_string()),
            p = shell_quote(&part),
            t = shell_quote(&to.display().to_string()),
        );
        let mut c = self.ssh();
        c.arg(format!("exec sh -c {}", shell_quote(&script)))
            .stdin(std::process::Stdio::from(file))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        self.session_result(c, timeout)
    }

    /// Runs the ssh session `c` to its end (within `timeout`): Ok if its
    /// remote command succeeded, else its status and stderr.
    fn session_result(&self, mut c: Command, timeout: Duration) -> Result<(), String> {
        let child = c.spawn().map_err(|e| format!("ssh: {e}"))?;
        let out = wait_output(child, timeout)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} ({}): {}",
                self.spec.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Closes the control shell: from now on every signal takes an SSH
    /// session of its own (`crasher hosts-bench --sessions` measures that).
    pub fn close_control_shell(&self) {
        *self.shell.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Runs `script` through the control shell (a new session when it is
    /// gone or fails).
    fn run_fast(&self, script: &str, timeout: Duration) -> Result<(), String> {
        let mut shell = self.shell.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sh) = shell.as_mut() {
            match sh.run(script, timeout) {
                Ok((0, _)) => return Ok(()),
                Ok((code, msg)) => {
                    return Err(format!(
                        "{}: exit status {code}: {}",
                        self.spec.name,
                        msg.replace('\n', " ")
                    ))
                }
                Err(e) => {
                    eprintln!(
                        "crasher: host {}: {e}; signals now take a session each",
                        self.spec.name
                    );
                    *shell = None;
                }
            }
        }
        drop(shell);
        self.run(script, timeout)
    }

    /// Runs `script` through the control shell only (no fallback: what it
    /// changes must be undone when the shell's session ends, see
    /// [`control_shell_script`]).
    /// Ok carries what the script wrote on stderr.
    pub fn run_control(&self, script: &str, timeout: Duration) -> Result<String, String> {
        let mut shell = self.shell.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sh) = shell.as_mut() else {
            return Err(format!("host {}: no control shell", self.spec.name));
        };
        match sh.run(script, timeout) {
            Ok((0, msg)) => Ok(msg),
            Ok((code, msg)) => Err(format!(
                "host {}: exit status {code}: {}",
                self.spec.name,
                msg.replace('\n', " ")
            )),
            Err(e) => {
                *shell = None;
                Err(format!("host {}: {e}", self.spec.name))
            }
        }
    }

    /// Makes `script` (an nft table definition from
    /// [`netlab::node_rules`], empty to delete it) the run's table on this
    /// host, atomically (one `nft -f`), through the control shell.
    pub fn set_table(&self, script: &str) -> Result<(), String> {
        let input = netlab::replace_table(&self.table, script);
        self.run_control(
            &format!("printf '%s' {} | nft -f -", shell_quote(&input)),
            SIGNAL_TIMEOUT,
        )
        .map(|_| ())
    }

    /// Sends `sig` to the process group of remote process `name`. A
    /// process that is gone is not an error (as ESRCH locally); an SSH
    /// failure is.
    pub fn signal(&self, name: &str, sig: Signal) -> Result<(), String> {
        let pids = shell_quote(&self.dir.join("pids").join(name).display().to_string());
        self.run_fast(
            &format!(
                "p=$(cat {pids} 2>/dev/null) || exit 0; kill -{s} \"-$p\" 2>/dev/null || kill -{s} \"$p\" 2>/dev/null; true",
                s = sig_name(sig)
            ),
            SIGNAL_TIMEOUT,
        )
    }

    /// SIGSTOPs remote process `name` once its wrapper has started it
    /// (polls for its pgid file on the host, up to 10 s): for a process
    /// started while the world is being stopped.
    pub fn stop_when_started(&self, name: &str) -> Result<(), String> {
        let f = shell_quote(&self.dir.join("pids").join(name).display().to_string());
        self.run(
            &format!(
                "i=0; while [ ! -s {f} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                 p=$(cat {f} 2>/dev/null) || exit 0; kill -STOP \"-$p\" 2>/dev/null || kill -STOP \"$p\" 2>/dev/null; true"
            ),
            SIGNAL_TIMEOUT + Duration::from_secs(10),
        )
    }

    /// Sends `sig` to the process group of every remote process of the run
    /// on this host.
    pub fn signal_all(&self, sig: Signal) -> Result<(), String> {
        let dir = shell_quote(&self.dir.join("pids").display().to_string());
        self.run_fast(
            &format!(
                "for f in {dir}/*; do [ -f \"$f\" ] && p=$(cat \"$f\") && {{ kill -{s} \"-$p\" 2>/dev/null || kill -{s} \"$p\" 2>/dev/null; }}; done; true",
                s = sig_name(sig)
            ),
            SIGNAL_TIMEOUT,
        )
    }
}

/// How long a remote signal may take before it counts as failed.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

fn sig_name(sig: Signal) -> &'static str {
    sig.as_str().trim_start_matches("SIG")
}

/// Waits for `child` up to `timeout` (killing it then), with its output.
fn wait_output(
    mut child: std::process::Child,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let deadline = Instant::now() + timeout;
    let done = procs::wait_until(deadline, || matches!(child.try_wait(), Ok(Some(_))));
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("ssh did not answer within {timeout:?}"));
    }
    child.wait_with_output().map_err(|e| format!("ssh: {e}"))
}

/// The hosts of a run: the master connections and the placement.
#[derive(Debug)]
pub struct Hosts {
    remotes: Vec<Arc<Remote>>,
    masters: Vec<Proc>,
    placement: Vec<usize>,
    sink: Option<usize>,
    feeders: Option<usize>,
    control: Ipv4Addr,
    /// The network faults in force (worker level, as asked).
    faults: Faults,
    /// The table script in force per host (index), for those that have one.
    applied: BTreeMap<usize, String>,
}

/// The worker-level `faults` as host-level ones (nodes named by host index,
/// [`End::Lab`] the control machine), given each member's host
/// (`host_of`: worker name to host index). Err, saying why, when a host's
/// rules cannot make exactly these faults: two workers on one host cut
/// from each other, a cut or a flaky link that would also hit another
/// member of the same host (rules match a host's address, which its
/// workers share).
pub fn host_faults(faults: &Faults, host_of: &BTreeMap<String, usize>) -> Result<Faults, String> {
    let host = |e: &End| -> Result<End, String> {
        match e {
            End::Lab => Ok(End::Lab),
            End::Node(n) => host_of
                .get(n)
                .map(|h| End::Node(h.to_string()))
                .ok_or_else(|| format!("{n} is not a member")),
        }
    };
    let on = |h: &End| -> Vec<End> {
        host_of
            .iter()
            .filter(|(_, i)| End::Node(i.to_string()) == *h)
            .map(|(n, _)| End::Node(n.clone()))
            .collect()
    };
    let mut out = Faults::default();
    for c in &faults.cuts {
        let (hf, ht) = (host(&c.from)?, host(&c.to)?);
        if hf == ht {
            return Err(format!(
                "{} and {} share a host: no rule can cut them apart",
                c.from, c.to
            ));
        }
        // Every member of the one host must be cut from every member of
        // the other (the lab is itself).
        let froms = if hf == End::Lab {
            vec![End::Lab]
        } else {
            on(&hf)
        };
        let tos = if ht == End::Lab {
            vec![End::Lab]
        } else {
            on(&ht)
        };
        for f in &froms {
            for t in &tos {
                let want = netlab::Cut {
                    from: f.clone(),
                    to: t.clone(),
                };
                if !faults.cuts.contains(&want) {
                    return Err(format!(
                        "cutting {}->{} would cut {f}->{t} too (they share hosts)",
                        c.from, c.to
                    ));
                }
            }
        }
        out.cuts.insert(netlab::Cut { from: hf, to: ht });
    }
    for (n, p) in &faults.flaky {
        let End::Node(h) = host(&End::Node(n.clone()))? else {
            continue;
        };
        for other in on(&End::Node(h.clone())) {
            let End::Node(o) = &other else { continue };
            if faults.flaky.get(o) != Some(p) {
                return Err(format!(
                    "a flaky link for {n} would make {o}, on the same host, flaky too"
                ));
            }
        }
        out.flaky.insert(h, *p);
    }
    Ok(out)
}

/// Every remote host of the live run, for pause-the-world and the panic
/// hook, which work without the cluster's lock.
static REMOTES: Mutex<Vec<Arc<Remote>>> = Mutex::new(Vec::new());

/// Sends `sig` to every remote process of the run, all hosts at once;
/// returns when every host answered (or failed: reported on stderr).
pub fn signal_every_host(sig: Signal) {
    let remotes = REMOTES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    std::thread::scope(|s| {
        for r in &remotes {
            s.spawn(move || {
                if let Err(e) = r.signal_all(sig) {
                    eprintln!("crasher: {sig} on host {}: {e}", r.spec.name);
                }
            });
        }
    });
}

/// How long a master connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

impl Hosts {
    /// Opens one master connection per host (socket and log in
    /// `run_dir/ssh/`), waits until each answers, and makes the run's
    /// directory on each host.
    pub fn connect(cfg: &HostsConfig, run_dir: &Path, run_id: &str) -> Result<Hosts, HostsError> {
        let ssh_dir = run_dir.join("ssh");
        std::fs::create_dir_all(&ssh_dir)
            .map_err(|e| HostsError(format!("{}: {e}", ssh_dir.display())))?;
        let mut hosts = Hosts {
            remotes: Vec::new(),
            masters: Vec::new(),
            placement: cfg.placement.clone(),
            sink: cfg.sink,
            feeders: cfg.feeders,
            control: cfg.control,
            faults: Faults::default(),
            applied: BTreeMap::new(),
        };
        for (i, spec) in cfg.hosts.iter().enumerate() {
            let control = ssh_dir.join(i.to_string());
            if control.as_os_str().len() > 100 {
                return Err(HostsError(format!(
                    "the ssh control socket path {} is too long for a Unix socket: use a shorter --run-dir",
                    control.display()
                )));
            }
            let mut c = Command::new("ssh");
            c.arg("-M")
                .arg("-S")
                .arg(&control)
                .args([
                    "-N",
                    "-o",
                    "ControlPersist=no",
                    "-o",
                    "ServerAliveInterval=5",
                ])
                .args(["-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10"])
                .args(&spec.ssh_options)
                .arg("--")
                .arg(&spec.destination)
                .env(RUN_ID_VAR, run_id);
            let log = ssh_dir.join(format!("{}.log", spec.name));
            let mut master = Proc::spawn(&format!("ssh-master.{}", spec.name), c, &log)
                .map_err(|e| HostsError(format!("host {}: cannot start ssh: {e}", spec.name)))?;
            let mut remote = Remote {
                spec: spec.clone(),
                control: control.clone(),
                dir: spec.workdir.join(run_id),
                table: table_name(run_id),
                shell: Mutex::new(None),
            };
            let deadline = Instant::now() + CONNECT_TIMEOUT;
            let up = procs::wait_until(deadline, || !master.is_running() || check(&remote));
            if !up || !master.is_running() {
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(HostsError(format!(
                    "host {} ({}): no SSH connection{}: {}",
                    spec.name,
                    spec.destination,
                    if up { "" } else { " within 20 s" },
                    why.trim()
                )));
            }
            let dir = shell_quote(&remote.dir.display().to_string());
            remote
                .run(
                    &format!(
                        "mkdir -p {dir}/pids {dir}/state {dir}/sink {dir}/{}",
                        super::cluster::FEEDER_STATUS_DIR
                    ),
                    SIGNAL_TIMEOUT,
                )
                .map_err(|e| {
                    HostsError(format!(
                        "host {}: cannot make the run's directory: {e}",
                        spec.name
                    ))
                })?;
            let shell = ControlShell::start(&remote);
            if shell.is_none() {
                eprintln!(
                    "crasher: host {}: no control shell; signals take a session each",
                    spec.name
                );
            }
            remote.shell = Mutex::new(shell);
            hosts.masters.push(master);
            hosts.remotes.push(Arc::new(remote));
        }
        REMOTES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(hosts.remotes.iter().cloned());
        Ok(hosts)
    }

    /// The host of worker `i`.
    pub fn of_worker(&self, i: usize) -> &Arc<Remote> {
        &self.remotes[self.placement[i % self.placement.len()]]
    }

    /// The sink's host, if the hosts file places it on one.
    pub fn of_sink(&self) -> Option<&Arc<Remote>> {
        self.sink.map(|i| &self.remotes[i])
    }

    /// The feeders' host, if the hosts file places them on one.
    pub fn of_feeders(&self) -> Option<&Arc<Remote>> {
        self.feeders.map(|i| &self.remotes[i])
    }

    /// Whether the sink or the feeders run on a host rather than here.
    pub fn places_sink_or_feeders(&self) -> bool {
        self.sink.is_some() || self.feeders.is_some()
    }

    /// The control machine's address.
    pub fn control(&self) -> Ipv4Addr {
        self.control
    }

    /// The hosts.
    pub fn remotes(&self) -> &[Arc<Remote>] {
        &self.remotes
    }

    /// The index (into [`Hosts::remotes`]) of worker `i`'s host.
    pub fn index_of_worker(&self, i: usize) -> usize {
        self.placement[i % self.placement.len()]
    }

    /// Checks that network faults can be put in force on every host: `nft`
    /// runs there, as root, through the control shell (which deletes the
    /// run's table when its session ends).
    pub fn check_nft(&self) -> Result<(), HostsError> {
        for r in &self.remotes {
            r.run_control(
                &format!(
                    "command -v nft >/dev/null || {{ echo 'nft not found (install nftables)' >&2; exit 1; }}; \
                     nft add table inet {t} && nft delete table inet {t}",
                    t = shell_quote(&r.table)
                ),
                SIGNAL_TIMEOUT,
            )
            .map(|_| ())
            .map_err(|e| {
                HostsError(format!(
                    "network faults need nftables and root on every host: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The network faults in force (as asked, worker level).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Puts worker-level `faults` in force with nftables rules in the run's
    /// table on the hosts ([`host_faults`] maps them to hosts; `host_of`
    /// gives each member's host index): a host whose rules change gets its
    /// table rewritten atomically, through its control shell. Every rule
    /// table accepts the SSH port first, both ways, so crasher's own
    /// connections are never cut. An empty `faults` heals everything.
    pub fn apply_network(
        &mut self,
        faults: &Faults,
        host_of: &BTreeMap<String, usize>,
    ) -> Result<(), String> {
        let hf = host_faults(faults, host_of)?;
        let control = self.control;
        let addrs: Vec<Ipv4Addr> = self.remotes.iter().map(|r| r.spec.address).collect();
        let addr = |e: &End| -> Result<Ipv4Addr, netlab::NetlabError> {
            match e {
                End::Lab => Ok(control),
                End::Node(n) => n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| addrs.get(i).copied())
                    .ok_or_else(|| netlab::NetlabError::NoNode(n.clone())),
            }
        };
        for (i, r) in self.remotes.iter().enumerate() {
            let style = rule_style(&r.table, r.spec.ssh_port);
            let script = netlab::node_rules(&i.to_string(), &hf, &addr, &style)
                .map_err(|e| e.to_string())?;
            if self
                .applied
                .get(&i)
                .map_or(script.is_empty(), |s| *s == script)
            {
                continue;
            }
            r.set_table(&script)?;
            if script.is_empty() {
                self.applied.remove(&i);
            } else {
                self.applied.insert(i, script);
            }
        }
        self.faults = faults.clone();
        Ok(())
    }
}

/// How a host's rules are written: the run's table, the host's links
/// (everything but `lo`) for flaky, and the SSH port accepted first both
/// ways (`tcp dport PORT accept` in, `tcp sport PORT accept` out, whoever
/// the peer), so no fault ever drops crasher's own SSH traffic.
pub fn rule_style(table: &str, ssh_port: u16) -> netlab::RuleStyle {
    netlab::RuleStyle {
        table: table.to_owned(),
        link_in: "iifname != \"lo\"".into(),
        link_out: "oifname != \"lo\"".into(),
        exempt_in: vec![format!("tcp dport {ssh_port} accept")],
        exempt_out: vec![format!("tcp sport {ssh_port} accept")],
    }
}

/// Whether the master connection of `r` answers `ssh -O check`.
fn check(r: &Remote) -> bool {
    let mut c = Command::new("ssh");
    c.arg("-S")
        .arg(&r.control)
        .args(["-O", "check"])
        .args(&r.spec.ssh_options)
        .arg("--")
        .arg(&r.spec.destination)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.status().is_ok_and(|s| s.success())
}

impl Drop for Hosts {
    /// Closes every master connection (`ssh -O exit`), then kills and
    /// reaps the master processes.
    fn drop(&mut self) {
        {
            let mut all = REMOTES.lock().unwrap_or_else(|e| e.into_inner());
            all.retain(|r| !self.remotes.iter().any(|o| Arc::ptr_eq(o, r)));
        }
        // Faults still in force are removed now (the control shells also
        // delete the table when their sessions end).
        for &i in self.applied.keys() {
            if let Err(e) = self.remotes[i].set_table("") {
                eprintln!("crasher: cannot remove the network faults: {e}");
            }
        }
        for r in &self.remotes {
            let _ = Command::new("ssh")
                .arg("-S")
                .arg(&r.control)
                .args(["-O", "exit"])
                .args(&r.spec.ssh_options)
                .arg("--")
                .arg(&r.spec.destination)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        for m in &mut self.masters {
            let _ = m.terminate(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostsConfig, String> {
        HostsConfig::parse(s, "h.toml", Path::new("/")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_hosts_file_parses_and_places_round_robin() {
        let c = parse(
            "control_address = \"10.0.0.1\"\nplacement = [\"b\", \"a\"]\n\
             [[host]]\nname = \"a\"\ndestination = \"root@10.0.0.2\"\nworkdir = \"/w\"\nport = 2222\n\
             [[host]]\nname = \"b\"\ndestination = \"b.example\"\naddress = \"10.0.0.3\"\nworkdir = \"/w\"\n",
        )
        .unwrap();
        assert_eq!(c.hosts[0].address, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(c.hosts[1].address, Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(c.placement, vec![1, 0]);
        assert_eq!((c.sink, c.feeders), (None, None));
        assert!(c.hosts[0]
            .ssh_options
            .windows(2)
            .any(|w| w == ["-p", "2222"]));
        assert!(c.hosts[0].ssh_options.iter().any(|o| o == "BatchMode=yes"));
        let c = parse(
            "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\n\
             workdir = \"/w\"\nenv = { X_Y = \"1 2\" }\n",
        )
        .unwrap();
        assert_eq!(c.hosts[0].env, vec!["X_Y=1 2".to_owned()]);
        let c = parse(
            "control_address = \"10.0.0.1\"\nsink = \"b\"\nfeeders = \"a\"\n\
             [[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\n\
             [[host]]\nname = \"b\"\ndestination = \"10.0.0.3\"\nworkdir = \"/w\"\n",
        )
        .unwrap();
        assert_eq!((c.sink, c.feeders), (Some(1), Some(0)));
        let e = parse(
            "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\n\
             workdir = \"/w\"\nenv = { \"A-B\" = \"1\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("field `env`"), "{e}");
    }

    #[test]
    fn worker_faults_become_host_rules_when_hosts_can_make_them() {
        let n = |s: &str| End::Node(s.to_owned());
        // initializer, worker1, worker2 on hosts 0, 1, 2; worker3 on 0.
        let mut host_of: BTreeMap<String, usize> = [("initializer", 0), ("worker1", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        host_of.insert("worker2".into(), 2);
        let mut f = Faults::default();
        f.cut_both(&n("worker1"), &n("initializer"));
        f.cut_both(&n("worker1"), &n("worker2"));
        f.cut_both(&n("worker1"), &End::Lab);
        let hf = host_faults(&f, &host_of).unwrap();
        let mut want = Faults::default();
        want.cut_both(&n("1"), &n("0"));
        want.cut_both(&n("1"), &n("2"));
        want.cut_both(&n("1"), &End::Lab);
        assert_eq!(hf, want);
        // The rules on host 1: SSH accepted first, then the drops.
        let addr = |e: &End| -> Result<Ipv4Addr, netlab::NetlabError> {
            Ok(match e {
                End::Lab => Ipv4Addr::new(10, 0, 0, 1),
                End::Node(h) => Ipv4Addr::new(10, 0, 0, 10 + h.parse::<u8>().unwrap()),
            })
        };
        let rules = netlab::node_rules("1", &hf, &addr, &rule_style("crasher_x", 2222)).unwrap();
        let input = rules.find("tcp dport 2222 accept").unwrap();
        assert!(
            input < rules.find("ip saddr 10.0.0.10 drop").unwrap(),
            "{rules}"
        );
        assert!(rules.contains("ip saddr 10.0.0.1 drop"), "{rules}");
        let output = rules.find("tcp sport 2222 accept").unwrap();
        assert!(
            output < rules.find("ip daddr 10.0.0.1 drop").unwrap(),
            "{rules}"
        );
        assert!(rules.starts_with("table inet crasher_x {"), "{rules}");
        // Host 0 only drops host 1's packets.
        let rules0 = netlab::node_rules("0", &hf, &addr, &rule_style("crasher_x", 22)).unwrap();
        assert!(rules0.contains("ip saddr 10.0.0.11 drop") && !rules0.contains("10.0.0.12"));
        // worker3 joins on host 0: cutting worker1 from the initializer
        // alone would cut it from worker3 too; two workers of one host
        // cannot be cut apart; a flaky initializer would take worker3.
        host_of.insert("worker3".into(), 0);
        let e = host_faults(&f, &host_of).unwrap_err();
        assert!(e.contains("worker3"), "{e}");
        f.cut_both(&n("worker1"), &n("worker3"));
        assert!(host_faults(&f, &host_of).is_ok());
        let mut g = Faults::default();
        g.cut_both(&n("initializer"), &n("worker3"));
        assert!(host_faults(&g, &host_of)
            .unwrap_err()
            .contains("share a host"));
        let mut g = Faults::default();
        g.flaky.insert("initializer".into(), 30);
        assert!(host_faults(&g, &host_of).is_err());
        g.flaky.insert("worker3".into(), 30);
        assert_eq!(host_faults(&g, &host_of).unwrap().flaky.get("0"), Some(&30));
        assert_eq!(
            table_name("20251123-070102-00ab"),
            "crasher_20251123_070102_00ab"
        );
    }

    #[test]
    fn the_control_shell_deletes_the_table_when_its_stdin_ends() {
        // The control shell's remote command, run locally by sh in a
        // network namespace of its own (no ssh): a table made through it
        // is gone once its stdin ends. Needs root and nft.
        if let Err(e) = netlab::preflight() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must run this test: {e}"
            );
            eprintln!("skipped: {e}");
            return;
        }
        let (Some(unshare), Some(nft)) = (netlab::which("unshare"), netlab::which("nft")) else {
            unreachable!("preflight found them");
        };
        let table = table_name("t-1");
        let mut c = Command::new(unshare);
        c.args(["--net", "--", "sh", "-c"])
            .arg(format!(
                "( sh -c \"$0\" ); {nft} list tables; echo end",
                nft = nft.display()
            ))
            .arg(control_shell_script(&table, Path::new("/nonexistent")))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "nft add table inet {table}\nnft list tables").unwrap();
        }
        let out = wait_output(child, Duration::from_secs(20)).unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out, format!("table inet {table}\nend\n"));
    }

    #[test]
    fn bad_hosts_files_name_the_field() {
        let cases = [
            ("control_address = \"10.0.0.1\"\n", "no [[host]]"),
            ("control_address = \"x\"\n", "control_address"),
            (
                "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"h.example\"\nworkdir = \"/w\"\n",
                "host[0] (a): field `address`",
            ),
            (
                "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"w\"\n",
                "field `workdir`",
            ),
            (
                "control_address = \"10.0.0.1\"\nplacement = [\"z\"]\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\n",
                "`placement`[0]: no host named `z`",
            ),
            (
                "control_address = \"10.0.0.1\"\nsink = \"z\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\n",
                "field `sink`: no host named `z`",
            ),
            (
                "control_address = \"10.0.0.1\"\nfeeders = \"y\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\n",
                "field `feeders`: no host named `y`",
            ),
            (
                "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\nidentity = \"/nonexistent/key\"\n",
                "field `identity`",
            ),
            (
                "control_address = \"10.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"10.0.0.2\"\nworkdir = \"/w\"\nprot = 22\n",
                "prot",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want) && e.starts_with("h.toml"), "{want}: {e}");
        }
    }

    #[test]
    fn the_wrapper_kills_its_group_when_stdin_ends() {
        // The wrapper itself, run locally by sh (no ssh): its child must
        // die when the wrapper's stdin reaches end-of-file, also when that
        // comes at once after the start, before `setsid` made the group
        // (which once left the child running and the wrapper waiting).
        let dir = tempfile::tempdir().unwrap();
        for round in 0..30 {
            let name = format!("w{round}");
            let mut c = Command::new("sh");
            c.args(["-c", WRAPPER, "crasher-wrap"])
                .arg(dir.path())
                .args([name.as_str(), "RID", "sleep", "1000"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = c.spawn().unwrap();
            let pidfile = dir.path().join("pids").join(&name);
            let started = procs::wait_until(Instant::now() + Duration::from_secs(10), || {
                std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
            });
            let pid: Option<u32> = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            drop(child.stdin.take());
            let ended = procs::wait_until(Instant::now() + Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            // Whatever happened, nothing is left behind.
            let _ = child.kill();
            let _ = child.wait();
            if let Some(p) = pid {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            assert!(started, "round {round}: no pgid file");
            assert!(
                ended,
                "round {round}: the wrapper did not end at end-of-file"
            );
            let pid = pid.unwrap();
            assert!(
                procs::stat::stat(pid).map_or(true, |s| s.dead()),
                "round {round}: the child survived"
            );
        }
        // The child carries CRASHER_RUN_ID (the wrapper does not).
        let mut c = Command::new("sh");
        c.args(["-c", WRAPPER, "crasher-wrap"])
            .arg(dir.path())
            .args(["env", "RID", "sleep", "1000"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let pidfile = dir.path().join("pids/env");
        let mut pid = None;
        procs::wait_until(Instant::now() + Duration::from_secs(10), || {
            pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            pid.is_some_and(|p| procs::belongs_to_run(p, "RID"))
        });
        let carries = pid.is_some_and(|p| procs::belongs_to_run(p, "RID"));
        let wrapper_carries = procs::belongs_to_run(child.id(), "RID");
        drop(child.stdin.take());
        let _ = child.wait();
        assert!(carries, "the child carries CRASHER_RUN_ID");
        assert!(!wrapper_carries, "the wrapper does not");
    }
}
