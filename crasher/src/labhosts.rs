//! `crasher lab-hosts N --dir DIR -- COMMAND...`: N lab hosts on this
//! machine, each a network namespace with its own address running a real
//! `sshd`, and COMMAND run beside them with a hosts file for `--hosts`
//! (see docs/hosts.md). For tests and for trying `--hosts` without
//! machines.
//!
//! It builds on `--network lab` (`run::network`, the `netlab` crate): it
//! re-executes itself as PID 1 of new network, PID and mount namespaces,
//! with no route out, builds the bridge there (198.18.0.1, where COMMAND
//! and so crasher's control side run) and one node namespace per host
//! (host N at 198.18.0.(10+N)), each running `sshd -D` with a host key
//! generated for it. A client key and a `known_hosts` holding the host keys
//! are generated too, so the hosts file checks host keys strictly (no
//! `StrictHostKeyChecking=no`). Whatever ends it, the kernel kills every
//! process of its PID namespace, sshd and the remote processes included,
//! and the namespaces go with them.

use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::exit;
use crate::run::network::{self, NetworkMode};

/// `crasher lab-hosts`.
#[derive(Debug, clap::Args)]
pub struct LabHostsArgs {
    /// How many hosts (1 to 16).
    pub count: u8,
    /// Where the keys, the sshd configs and logs, the hosts' working
    /// directories and `hosts.toml` are written (created).
    #[arg(long)]
    pub dir: PathBuf,
    /// After COMMAND ends, keep the hosts (and whatever still runs on
    /// them) until stdin reaches end-of-file: for tests that inspect them.
    #[arg(long)]
    pub hold: bool,
    /// NAME=VALUE in every host's `env` (repeatable): e.g.
    /// `CRASHER_NATS_SERVER=/path/to/nats-server`.
    #[arg(long = "host-env", value_name = "NAME=VALUE")]
    pub host_env: Vec<String>,
    /// Put `sink = "NAME"` in the hosts file: the sink runs on that lab
    /// host (`host0` …) instead of the control machine.
    #[arg(long = "sink-on", value_name = "HOST")]
    pub sink_on: Option<String>,
    /// Put `feeders = "NAME"` in the hosts file: the feeders run on that
    /// lab host.
    #[arg(long = "feeders-on", value_name = "HOST")]
    pub feeders_on: Option<String>,
    /// The command to run beside the hosts, e.g.
    /// `crasher 3 crash1 --hosts DIR/hosts.toml`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Run by `sh -c` in sshd's own mount namespace before it execs sshd:
/// hides the login user's `~/.bashrc` behind an empty file (see `run`).
const QUIET_BASHRC: &str =
    r#"[ -f "$HOME/.bashrc" ] && mount --bind /dev/null "$HOME/.bashrc"; exec "$@""#;

/// Where COMMAND finds the hosts file.
pub const HOSTS_FILE: &str = "hosts.toml";

/// Runs `crasher lab-hosts`.
pub fn run(a: LabHostsArgs) -> anyhow::Result<ExitCode> {
    if !(1..=16).contains(&a.count) {
        bail!("lab-hosts: COUNT must be 1 to 16, not {}", a.count);
    }
    let sshd = ["/usr/sbin/sshd", "/sbin/sshd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| netlab::which("sshd"));
    let (Some(sshd), Some(keygen)) = (sshd, netlab::which("ssh-keygen")) else {
        eprintln!("crasher lab-hosts: sshd or ssh-keygen not found (install openssh-server)");
        return Ok(ExitCode::from(exit::USAGE));
    };
    if netlab::which("ssh").is_none() {
        eprintln!("crasher lab-hosts: ssh not found (install openssh-client)");
        return Ok(ExitCode::from(exit::USAGE));
    }
    // Outside: re-executed in namespaces of its own; this returns its code.
    if let Some(code) = network::enter(NetworkMode::Lab, &[]) {
        return Ok(code);
    }
    let mut env_table = String::new();
    for kv in &a.host_env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("lab-hosts: --host-env {kv:?} is not NAME=VALUE");
        };
        write!(
            env_table,
            "{}{k:?} = {v:?}",
            if env_table.is_empty() { "" } else { ", " }
        )?;
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("{}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    // sshd chroots its unprivileged child into /run/sshd, which Debian
    // makes when it starts its own service (stopped here).
    std::fs::create_dir_all("/run/sshd").context("/run/sshd")?;

    let client_key = dir.join("client_key");
    keygen_to(&keygen, &client_key, "crasher-lab-client")?;
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
    let mut lab = netlab::Lab::create(&[]).context("cannot build the lab network")?;
    let mut sshds = Vec::new();
    let mut known_hosts = String::new();
    let mut hosts_toml = format!(
        "# Written by crasher lab-hosts: {} lab hosts, sshd each.\ncontrol_address = \"{}\"\n",
        a.count,
        netlab::LAB_ADDR
    );
    for (key, host) in [("sink", &a.sink_on), ("feeders", &a.feeders_on)] {
        if let Some(h) = host {
            writeln!(hosts_toml, "{key} = \"{h}\"")?;
        }
    }
    for i in 0..a.count {
        let name = format!("host{i}");
        let hdir = dir.join(&name);
        std::fs::create_dir_all(hdir.join("work"))?;
        let key = hdir.join("ssh_host_ed25519_key");
        keygen_to(&keygen, &key, &name)?;
        let addr = netlab::node_addr(i);
        let config = hdir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\nHostKey {}\nPidFile none\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AuthorizedKeysFile {}\nStrictModes no\nMaxSessions 200\nMaxStartups 100\n\
                 LogLevel INFO\n",
                key.display(),
                dir.join("authorized_keys").display()
            ),
        )?;
        lab.add_node(&name, i)
            .with_context(|| format!("cannot make lab host {name}"))?;
        // sshd in a mount namespace of its own in which the login user's
        // `~/.bashrc` is empty: bash sources it for every ssh session, and
        // a lab host must not depend on this machine's shell setup (pyenv's
        // `rehash` there leaves a lock file when a session is killed
        // during its start-up, and every later session then waits 60 s).
        // The bind mount lives and dies with that namespace.
        let unshare = netlab::which("unshare").context("unshare not found (util-linux)")?;
        let mut cmd = lab.command(&name, &unshare)?;
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            QUIET_BASHRC,
        ])
        .arg("lab-sshd")
        .arg(&sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config);
        sshds.push(
            procs::Proc::spawn(&format!("sshd.{name}"), cmd, &hdir.join("sshd.log"))
                .with_context(|| format!("cannot start sshd on {name}"))?,
        );
        let pubkey = std::fs::read_to_string(key.with_extension("pub"))?;
        let mut parts = pubkey.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            bail!("{}: not a public key", key.display());
        };
        writeln!(known_hosts, "{addr} {kind} {blob}")?;
        writeln!(
            hosts_toml,
            "\n[[host]]\nname = \"{name}\"\ndestination = \"{addr}\"\nidentity = \"client_key\"\n\
             known_hosts = \"known_hosts\"\nworkdir = \"{}\"\nssh_args = [\"-F\", \"/dev/null\"]\n\
             env = {{ {env_table} }}",
            hdir.join("work").display()
        )?;
    }
    std::fs::write(dir.join("known_hosts"), known_hosts)?;
    // Ready when every sshd accepts connections (polled, not slept).
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0..a.count {
        let to = SocketAddr::from((netlab::node_addr(i), 22));
        let up = procs::wait_until(deadline, || {
            TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok()
        });
        if !up || !sshds[i as usize].is_running() {
            let log =
                std::fs::read_to_string(dir.join(format!("host{i}/sshd.log"))).unwrap_or_default();
            bail!(
                "sshd of host{i} does not accept connections on {to}: {}",
                log.trim()
            );
        }
    }
    std::fs::write(dir.join(HOSTS_FILE), hosts_toml)?;
    eprintln!(
        "crasher lab-hosts: {} hosts ready ({}); running {}",
        a.count,
        dir.join(HOSTS_FILE).display(),
        a.command.join(" ")
    );
    let code = run_command(&a.command)?;
    if a.hold {
        eprintln!("crasher lab-hosts: command ended ({code}); holding the hosts until stdin ends");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
    drop(sshds);
    Ok(ExitCode::from(code))
}

/// `ssh-keygen` an ed25519 key without passphrase at `path` (and `.pub`).
fn keygen_to(keygen: &Path, path: &Path, comment: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let st = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("ssh-keygen")?;
    if !st.success() {
        bail!("ssh-keygen for {} failed: {st}", path.display());
    }
    Ok(())
}

/// Runs COMMAND (own process group) and returns its exit code; the
/// terminating signals this PID 1 receives are passed on to it.
fn run_command(command: &[String]) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..]).kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", command[0]))?;
        let pid = child.id();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for sig in crate::soak::signals::terminating_signals() {
            let Ok(mut stream) = signal(SignalKind::from_raw(sig)) else {
                continue;
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
        loop {
            tokio::select! {
                st = child.wait() => {
                    let st = st?;
                    return Ok(st
                        .code()
                        .and_then(|c| u8::try_from(c).ok())
                        .unwrap_or(exit::UNKNOWN));
                }
                Some(sig) = rx.recv() => {
                    if let (Some(p), Ok(s)) = (pid, nix::sys::signal::Signal::try_from(sig)) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX)),
                            s,
                        );
                    }
                }
            }
        }
    })
}
