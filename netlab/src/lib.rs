//! A private lab network for one run.
//!
//! ```text
//!   lab namespace (the run's own; the supervisor, sink and feeders live here)
//!   ┌──────────────────────────────────────────────────────────────┐
//!   │ lo 127.0.0.1          crbr0 198.18.0.1/24 (bridge)           │
//!   │                        │           │            │            │
//!   │                     crv0        crv1         crv2   (veths)  │
//!   └────────────────────────┼───────────┼────────────┼────────────┘
//!                         eth0        eth0         eth0
//!                   198.18.0.10  198.18.0.11  198.18.0.12
//!                   node ns 0    node ns 1    node ns 2   (one per worker)
//! ```
//!
//! [`Lab::create`] works in the network namespace of the *calling thread*,
//! which must be a fresh private one (it refuses a namespace that has any
//! interface but `lo`, so it can never touch a host's network). Each node
//! is a namespace held by a holder process (`unshare --net sleep`), killed
//! and reaped when the [`Lab`] is dropped; the node's programs are started
//! with [`Lab::command`] (`nsenter --net=/proc/HOLDER/ns/net PROGRAM`).
//!
//! Faults are a set of [`Cut`]s and flaky links, applied with
//! [`Lab::apply`]: nftables rules in a table `inet crasher` inside the
//! node namespaces only. An empty [`Faults`] heals everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lab's own address: the bridge in the lab namespace, where the
/// supervisor, the sink and the feeders are reached.
pub const LAB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of the lab subnet 198.18.0.0/24.
pub const PREFIX: u8 = 24;
/// The bridge's interface name in the lab namespace.
pub const BRIDGE: &str = "crbr0";
/// The nftables table every fault lives in (inside node namespaces only).
pub const TABLE: &str = "crasher";
/// The most nodes a lab holds (198.18.0.10 ... 198.18.0.249).
pub const MAX_NODES: u8 = 240;

/// The address of node `index` (worker `index`): 198.18.0.(10 + index).
pub fn node_addr(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10u8.saturating_add(index.min(MAX_NODES - 1)))
}

/// What went wrong setting up or changing the lab.
#[derive(Debug, thiserror::Error)]
pub enum NetlabError {
    /// A program the lab needs is not installed.
    #[error("{program} not found on PATH: {hint}")]
    Missing {
        /// The program.
        program: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// The namespace is not a fresh private one.
    #[error("refusing to build a lab in a network namespace that has interfaces besides lo ({0}): the lab must run in a namespace of its own")]
    NotPrivate(String),
    /// A command failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// No node of that name.
    #[error("no lab node named {0:?}")]
    NoNode(String),
    /// Too many nodes or a duplicate.
    #[error("cannot add node {0:?}: {1}")]
    BadNode(String, String),
    /// System call or file error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The programs a lab needs, with how to get them.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "install iproute2 (apt-get install iproute2)"),
    ("nft", "install nftables (apt-get install nftables)"),
    ("unshare", "install util-linux"),
    ("nsenter", "install util-linux"),
    ("setpriv", "install util-linux"),
];

/// Checks that every program in [`TOOLS`] is on `PATH`.
pub fn check_tools() -> Result<(), NetlabError> {
    for &(program, hint) in TOOLS {
        if which(program).is_none() {
            return Err(NetlabError::Missing { program, hint });
        }
    }
    Ok(())
}

/// Checks that a lab can be built here: the tools are installed, and a
/// new network namespace can be made in which `nft` works (which needs
/// root or CAP_NET_ADMIN and the kernel's nf_tables). The error names what
/// is missing.
pub fn preflight() -> Result<(), NetlabError> {
    check_tools()?;
    let mut c = Command::new(which("unshare").unwrap_or_else(|| "unshare".into()));
    c.args(["--net", "--"])
        .arg(which("nft").unwrap_or_else(|| "nft".into()))
        .args(["add", "table", "inet", TABLE]);
    run(&mut c).map_err(|e| NetlabError::Command {
        command: "unshare --net nft add table inet crasher".into(),
        message: format!(
            "cannot make a network namespace with nftables in it (needs root or \
             CAP_SYS_ADMIN + CAP_NET_ADMIN, and a kernel with network namespaces \
             and nf_tables): {e}"
        ),
    })
}

/// `program`'s path on `PATH` (plus /usr/sbin and /sbin, where Debian puts
/// `ip` and `nft` and a non-root PATH may not look).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The network configuration of the calling thread's namespace as text
/// (links, addresses, IPv4 and IPv6 routes of every table, the nftables
/// ruleset), to check that a lab left it exactly as it was. Address
/// lifetimes, which count down by themselves, are masked.
pub fn network_snapshot() -> std::io::Result<String> {
    let tool =
        |name: &str| which(name).ok_or_else(|| std::io::Error::other(format!("{name} not found")));
    let (ip, nft) = (tool("ip")?, tool("nft")?);
    let mut s = String::new();
    for args in [
        &["-d", "link", "show"][..],
        &["-d", "addr", "show"],
        &["route", "show", "table", "all"],
        &["-6", "route", "show", "table", "all"],
    ] {
        let out = Command::new(&ip).args(args).output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            s.push_str(if line.contains("valid_lft") {
                "(lifetimes)"
            } else {
                line
            });
            s.push('\n');
        }
    }
    let out = Command::new(&nft).args(["list", "ruleset"]).output()?;
    s.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(s)
}

/// The inode of the network namespace of `/proc/<who>/ns/net` (`who` is a
/// pid, `self` or `thread-self`).
pub fn netns_inode(who: &str) -> std::io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{who}/ns/net"))?.ino())
}

/// Every network namespace that some process or thread on the machine is
/// in or holds open now (the keys of [`netns_holders`]): tests compare it
/// before and after a run to prove nothing was left behind.
pub fn all_netns_inodes() -> BTreeSet<u64> {
    netns_holders().into_keys().collect()
}

/// Every network namespace that some process holds now, by inode, with
/// the pids that hold it: a thread of the process is in it
/// (`/proc/PID/task/*/ns/net`) or the process has it open
/// (`/proc/PID/fd/*` → `net:[INODE]`). A namespace kept only by a bind
/// mount (`ip netns add`) is not seen.
pub fn netns_holders() -> BTreeMap<u64, BTreeSet<u32>> {
    let mut out: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(m) = std::fs::metadata(t.path().join("ns/net")) {
                out.entry(m.ino()).or_default().insert(pid);
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let ino = link
                .to_str()
                .and_then(|l| l.strip_prefix("net:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok());
            if let Some(ino) = ino {
                out.entry(ino).or_default().insert(pid);
            }
        }
    }
    out
}

/// Runs `cmd`, turning a failure into an error carrying its stderr.
fn run(cmd: &mut Command) -> Result<(), NetlabError> {
    run_input(cmd, None)
}

fn run_input(cmd: &mut Command, input: Option<&str>) -> Result<(), NetlabError> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let err = |message: String| NetlabError::Command {
        command: line.clone(),
        message,
    };
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn ip(args: &[&str]) -> Command {
    let mut c = Command::new(which("ip").unwrap_or_else(|| "ip".into()));
    c.args(args);
    c
}

/// The interfaces of the calling thread's network namespace.
fn interfaces() -> Result<Vec<String>, NetlabError> {
    let out = ip(&["-o", "link", "show"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| NetlabError::Command {
            command: "ip -o link show".into(),
            message: e.to_string(),
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .collect())
}

/// One end of a link: a node (by name) or the lab namespace itself
/// (supervisor, sink, feeders).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// The lab namespace: [`LAB_ADDR`].
    Lab,
    /// A node by name.
    Node(String),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Lab => f.write_str("lab"),
            End::Node(n) => f.write_str(n),
        }
    }
}

/// Packets from `from` to `to` are dropped (one direction).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cut {
    /// Sender.
    pub from: End,
    /// Receiver.
    pub to: End,
}

/// The network faults in force: directed cuts and flaky nodes. The default
/// (empty) is a healed network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Directed cuts.
    pub cuts: BTreeSet<Cut>,
    /// Node name → percent of packets dropped on its link, both ways.
    pub flaky: BTreeMap<String, u8>,
}

impl Faults {
    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&mut self, a: &End, b: &End) {
        self.cuts.insert(Cut {
            from: a.clone(),
            to: b.clone(),
        });
        self.cuts.insert(Cut {
            from: b.clone(),
            to: a.clone(),
        });
    }

    /// Whether nothing is cut or flaky.
    pub fn is_healed(&self) -> bool {
        self.cuts.is_empty() && self.flaky.is_empty()
    }

    /// A short description: `worker1->lab, initializer<->worker2, flaky worker3 30%`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for c in &self.cuts {
            let back = Cut {
                from: c.to.clone(),
                to: c.from.clone(),
            };
            if self.cuts.contains(&back) {
                if c.from < c.to {
                    parts.push(format!("{}<->{}", c.from, c.to));
                }
            } else {
                parts.push(format!("{}->{}", c.from, c.to));
            }
        }
        for (n, p) in &self.flaky {
            parts.push(format!("flaky {n} {p}%"));
        }
        if parts.is_empty() {
            "healed".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A node: a network namespace held by a holder process.
#[derive(Debug)]
pub struct Node {
    /// Its name (the worker's name).
    pub name: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    index: u8,
    holder: Child,
}

impl Node {
    /// The holder's pid: the namespace is `/proc/PID/ns/net`.
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// The path of the node's network namespace.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The lab: a bridge in the calling thread's (private) namespace and its
/// nodes. Dropping it kills the holders, so the node namespaces go away;
/// the bridge goes with the lab namespace itself.
#[derive(Debug)]
pub struct Lab {
    nodes: BTreeMap<String, Node>,
    applied: BTreeMap<String, String>,
    faults: Faults,
    env: Vec<(String, String)>,
}

impl Lab {
    /// Builds the bridge in the calling thread's network namespace, which
    /// must have no interface but `lo` (a namespace of the run's own).
    /// `env` is set on every process the lab starts (e.g. the run id).
    pub fn create(env: &[(&str, &str)]) -> Result<Lab, NetlabError> {
        check_tools()?;
        let ifs = interfaces()?;
        if ifs.iter().any(|i| i != "lo") {
            return Err(NetlabError::NotPrivate(ifs.join(",")));
        }
        let addr = format!("{LAB_ADDR}/{PREFIX}");
        run(&mut ip(&["link", "set", "lo", "up"]))?;
        run(&mut ip(&["link", "add", BRIDGE, "type", "bridge"]))?;
        run(&mut ip(&["addr", "add", &addr, "dev", BRIDGE]))?;
        run(&mut ip(&["link", "set", BRIDGE, "up"]))?;
        Ok(Lab {
            nodes: BTreeMap::new(),
            applied: BTreeMap::new(),
            faults: Faults::default(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    /// Adds node `name` with address [`node_addr`]`(index)`: a holder
    /// process in a new network namespace, a veth pair from the bridge to
    /// its `eth0`, address and links up. Adding an existing node is a no-op.
    pub fn add_node(&mut self, name: &str, index: u8) -> Result<&Node, NetlabError> {
        if self.nodes.contains_key(name) {
            return Ok(&self.nodes[name]);
        }
        if index >= MAX_NODES || self.nodes.values().any(|n| n.index == index) {
            return Err(NetlabError::BadNode(
                name.into(),
                format!("index {index} is taken or not below {MAX_NODES}"),
            ));
        }
        let unshare = which("unshare").ok_or(NetlabError::Missing {
            program: "unshare",
            hint: "install util-linux",
        })?;
        let sleep = which("sleep").unwrap_or_else(|| "sleep".into());
        let mut cmd = Command::new(unshare);
        cmd.args(["--net", "--"])
            .arg(sleep)
            .arg("infinity")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let holder = cmd.spawn()?;
        let node = Node {
            name: name.to_owned(),
            addr: node_addr(index),
            index,
            holder,
        };
        // The holder has its namespace once /proc/PID/ns/net differs from ours.
        let ours = netns_inode("thread-self")?;
        let pid = node.holder_pid().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match netns_inode(&pid) {
                Ok(ino) if ino != ours => break,
                _ if Instant::now() >= deadline => {
                    return Err(NetlabError::BadNode(
                        name.into(),
                        "the holder never entered a namespace of its own".into(),
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let veth = format!("crv{index}");
        run(&mut ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]))?;
        run(&mut ip(&["link", "set", &veth, "master", BRIDGE, "up"]))?;
        let addr = format!("{}/{PREFIX}", node.addr);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", addr.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
        ] {
            run(&mut node_cmd(
                &node,
                which("ip").unwrap_or_else(|| "ip".into()),
                &args,
            ))?;
        }
        self.nodes.insert(name.to_owned(), node);
        Ok(&self.nodes[name])
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// A command that runs `program` in node `name`'s namespace
    /// (`nsenter --net=/proc/HOLDER/ns/net -- program`): no fork, so the
    /// child's pid is the program's.
    pub fn command(&self, name: &str, program: &std::path::Path) -> Result<Command, NetlabError> {
        let node = self
            .nodes
            .get(name)
            .ok_or_else(|| NetlabError::NoNode(name.into()))?;
        Ok(node_cmd(node, program.into(), &[] as &[&str]))
    }

    /// Runs `f` on a thread that has entered node `name`'s namespace (a
    /// socket made there stays there): for probes and tests.
    pub fn in_node<T: Send>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, NetlabError> {
        let node = self
            .nodes
            .get(name)
            .ok_or_else(|| NetlabError::NoNode(name.into()))?;
        let ns = File::open(node.netns_path())?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetlabError::Io(e.into()))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetlabError::Io(std::io::Error::other(
                    "the probe thread panicked",
                )))
            })
        })
    }

    /// The faults in force now.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Makes `faults` the ones in force: rewrites the `inet crasher` table
    /// of every node whose rules change (atomically, one `nft -f` each).
    /// A cut from A to B is a drop rule in B's input chain, or in A's
    /// output chain when B is the lab. An empty `faults` heals everything.
    pub fn apply(&mut self, faults: &Faults) -> Result<(), NetlabError> {
        for c in &faults.cuts {
            for e in [&c.from, &c.to] {
                if let End::Node(n) = e {
                    if !self.nodes.contains_key(n) {
                        return Err(NetlabError::NoNode(n.clone()));
                    }
                }
            }
        }
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let script = self.script(&name, faults)?;
            if self
                .applied
                .get(&name)
                .map_or(script.is_empty(), |s| *s == script)
            {
                continue;
            }
            let node = &self.nodes[&name];
            let nft = which("nft").unwrap_or_else(|| "nft".into());
            let full = replace_table(TABLE, &script);
            run_input(&mut node_cmd(node, nft, &["-f", "-"]), Some(&full))?;
            self.applied.insert(name, script);
        }
        self.faults = faults.clone();
        Ok(())
    }

    /// Heals everything.
    pub fn heal(&mut self) -> Result<(), NetlabError> {
        self.apply(&Faults::default())
    }

    fn addr_of(&self, e: &End) -> Result<Ipv4Addr, NetlabError> {
        match e {
            End::Lab => Ok(LAB_ADDR),
            End::Node(n) => self
                .nodes
                .get(n)
                .map(|n| n.addr)
                .ok_or_else(|| NetlabError::NoNode(n.clone())),
        }
    }

    /// The nft script of node `name` for `faults` (empty: no table).
    fn script(&self, name: &str, faults: &Faults) -> Result<String, NetlabError> {
        node_rules(name, faults, &|e| self.addr_of(e), &RuleStyle::lab())
    }
}

/// How [`node_rules`] writes a node's table: its name, how the node's
/// link is matched (flaky), and rules put first in each chain that accept
/// what must never be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStyle {
    /// The table (`inet TABLE`).
    pub table: String,
    /// What matches a packet coming in on the node's link (for flaky).
    pub link_in: String,
    /// What matches a packet going out on it.
    pub link_out: String,
    /// Accept rules first in the input chain (e.g. an SSH exemption).
    pub exempt_in: Vec<String>,
    /// Accept rules first in the output chain.
    pub exempt_out: Vec<String>,
}

impl RuleStyle {
    /// A lab node's: table [`TABLE`], link `eth0`, no exemption.
    pub fn lab() -> RuleStyle {
        RuleStyle {
            table: TABLE.into(),
            link_in: "iifname \"eth0\"".into(),
            link_out: "oifname \"eth0\"".into(),
            exempt_in: Vec::new(),
            exempt_out: Vec::new(),
        }
    }
}

/// The nft script (a whole `table inet …` definition) of node `me` for
/// `faults`, empty when nothing of it is cut or flaky. A cut from A to B
/// is `ip saddr A drop` in B's input chain, or `ip daddr B drop` in A's
/// output chain when B is the lab ([`End::Lab`]); a flaky node drops a
/// share of the packets on its link both ways. `addr` gives each end's
/// address.
pub fn node_rules(
    me: &str,
    faults: &Faults,
    addr: &dyn Fn(&End) -> Result<Ipv4Addr, NetlabError>,
    style: &RuleStyle,
) -> Result<String, NetlabError> {
    let me_end = End::Node(me.to_owned());
    let mut input = Vec::new();
    let mut output = Vec::new();
    for c in &faults.cuts {
        if c.to == me_end {
            input.push(format!("ip saddr {} drop", addr(&c.from)?));
        } else if c.from == me_end && c.to == End::Lab {
            output.push(format!("ip daddr {} drop", addr(&c.to)?));
        }
    }
    match faults.flaky.get(me).copied() {
        None | Some(0) => {}
        Some(p) => {
            // nft wants the compared value below the modulus.
            let share = if p >= 100 {
                String::new()
            } else {
                format!("numgen random mod 100 < {p} ")
            };
            input.push(format!("{} {share}drop", style.link_in));
            output.push(format!("{} {share}drop", style.link_out));
        }
    }
    if input.is_empty() && output.is_empty() {
        return Ok(String::new());
    }
    let chain = |hook: &str, exempt: &[String], rules: &[String]| {
        let mut s =
            format!("  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n");
        for r in exempt.iter().chain(rules) {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n");
        s
    };
    Ok(format!(
        "table inet {} {{\n{}{}}}\n",
        style.table,
        chain("input", &style.exempt_in, &input),
        chain("output", &style.exempt_out, &output)
    ))
}

/// The `nft -f` input that makes `script` (from [`node_rules`]) the whole
/// of table `table`, atomically: create it if missing, delete it, then
/// define it again (an empty `script` just deletes it).
pub fn replace_table(table: &str, script: &str) -> String {
    format!("table inet {table}\ndelete table inet {table}\n{script}")
}

fn node_cmd(node: &Node, program: PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(which("nsenter").unwrap_or_else(|| "nsenter".into()));
    c.arg(format!("--net={}", node.netns_path().display()))
        .arg("--")
        .arg(program)
        .args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rules_write_the_lab_table_and_put_exemptions_first() {
        let addr = |e: &End| -> Result<Ipv4Addr, NetlabError> {
            Ok(match e {
                End::Lab => LAB_ADDR,
                End::Node(n) => node_addr(n.trim_start_matches('n').parse().unwrap()),
            })
        };
        let mut f = Faults::default();
        f.cut_both(&End::Node("n1".into()), &End::Lab);
        f.flaky.insert("n1".into(), 30);
        let lab = node_rules("n1", &f, &addr, &RuleStyle::lab()).unwrap();
        assert_eq!(
            lab,
            "table inet crasher {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
             ip saddr 198.18.0.1 drop\n    iifname \"eth0\" numgen random mod 100 < 30 drop\n  }\n  \
             chain output {\n    type filter hook output priority 0; policy accept;\n    \
             ip daddr 198.18.0.1 drop\n    oifname \"eth0\" numgen random mod 100 < 30 drop\n  }\n}\n"
        );
        assert_eq!(node_rules("n2", &f, &addr, &RuleStyle::lab()).unwrap(), "");
        let style = RuleStyle {
            table: "t".into(),
            link_in: "iifname != \"lo\"".into(),
            link_out: "oifname != \"lo\"".into(),
            exempt_in: vec!["tcp dport 22 accept".into()],
            exempt_out: vec!["tcp sport 22 accept".into()],
        };
        let r = node_rules("n1", &f, &addr, &style).unwrap();
        assert!(r.starts_with("table inet t {"), "{r}");
        assert!(r.find("tcp dport 22 accept").unwrap() < r.find("ip saddr").unwrap());
        assert!(r.find("tcp sport 22 accept").unwrap() < r.find("ip daddr").unwrap());
        assert_eq!(
            replace_table("t", ""),
            "table inet t\ndelete table inet t\n"
        );
    }

    #[test]
    fn addresses_and_descriptions() {
        assert_eq!(node_addr(0), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(node_addr(9), Ipv4Addr::new(198, 18, 0, 19));
        let mut f = Faults::default();
        assert!(f.is_healed());
        assert_eq!(f.describe(), "healed");
        f.cut_both(&End::Node("a".into()), &End::Node("b".into()));
        f.cuts.insert(Cut {
            from: End::Node("c".into()),
            to: End::Lab,
        });
        f.flaky.insert("d".into(), 30);
        assert_eq!(f.describe(), "a<->b, c->lab, flaky d 30%");
    }
}
