//! Environment profiles: how to start, address and feed a cluster.
//!
//! A profile is a TOML file (see `env/`). Argument lists are templates whose
//! `{placeholders}` are filled per process (see [`Vars`]). The built-in
//! profiles are compiled in, so `crasher 4` needs no files at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The profiles shipped with crasher, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("passthrough", include_str!("../../../env/passthrough.toml")),
    ("tcp", include_str!("../../../env/tcp.toml")),
    (
        "nats-jetstream",
        include_str!("../../../env/nats-jetstream.toml"),
    ),
    (
        "redis-sentinel",
        include_str!("../../../env/redis-sentinel.toml"),
    ),
    (
        "redis-sentinel-always",
        include_str!("../../../env/redis-sentinel-always.toml"),
    ),
];

/// Whether the system speaks the connector protocol (full verification) or
/// plain TCP (no 2PC, so no verification or ack progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connector protocol v3 sources, 2PC sink.
    Connector,
    /// Plain TCP.
    Tcp,
}

/// A parsed profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name.
    pub name: String,
    /// One line for `--help` and the run record.
    pub description: String,
    /// Protocol family.
    pub mode: Mode,
    /// Port layout.
    pub ports: Ports,
    /// How workers are started.
    pub worker: WorkerCmd,
    /// How the sink is started.
    pub sink: Cmd,
    /// How a feeder is started.
    pub feeder: Cmd,
    /// How readiness of a worker is decided.
    #[serde(default)]
    pub readiness: Readiness,
    /// Which faults and topology changes the system supports.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// What the verifier expects of committed output.
    #[serde(default)]
    pub verify_mode: VerifyMode,
    /// How worker state directories are stored, and which of their files
    /// are data files (`corrupt`, `truncate`).
    #[serde(default)]
    pub disk: Disk,
    /// `[network] mode`: `loopback` (default) or `lab` (docs/network.md).
    #[serde(default)]
    pub network: super::network::NetworkSection,
    /// `[primary] kind`: how to tell which node is the primary now, for
    /// `crash-primary` (none by default).
    #[serde(default)]
    pub primary: Primary,
    /// `[[trigger]]`: faults fired by a line in a role's log (docs/faults.md).
    #[serde(default, rename = "trigger")]
    pub triggers: Vec<Trigger>,
    /// Where the profile came from (file path or `builtin:NAME`).
    #[serde(skip)]
    pub origin: String,
}

/// One `[[trigger]]`: when a line of `role`'s log matches `regex`, apply
/// `action` to `target`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Whose log to follow: `worker` (every worker's) or `sink`.
    pub role: TriggerRole,
    /// A regular expression (Rust `regex` syntax) over one log line.
    pub regex: String,
    /// What to do: `crash` (SIGKILL, restart), `pause` (SIGSTOP, SIGCONT),
    /// `isolate` (a network cut, `--network lab` or `--hosts`) or `power-loss` (`--disk lossy`).
    pub action: TriggerAction,
    /// Whom: `self` (the worker whose log matched; the default), `random`
    /// (a random member), `other` (a random member but that one),
    /// `primary` (the profile's `[primary]` says which), `workerN` /
    /// `initializer`, or `sink` (crash only).
    #[serde(default = "self_target")]
    pub target: String,
    /// Fire at the first match only.
    #[serde(default)]
    pub once: bool,
    /// Seconds after a firing during which matches are ignored.
    #[serde(default = "default_cooldown")]
    pub cooldown: f64,
    /// Down-time of a crash, or how long a pause lasts, in seconds.
    #[serde(default = "default_down")]
    pub down: f64,
}

fn self_target() -> String {
    "self".to_owned()
}

fn default_cooldown() -> f64 {
    5.0
}

fn default_down() -> f64 {
    1.0
}

/// See [`Trigger::role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerRole {
    /// Every worker's log.
    Worker,
    /// The sink's log.
    Sink,
}

/// See [`Trigger::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerAction {
    /// SIGKILL, restart after `down` seconds.
    Crash,
    /// SIGSTOP for `down` seconds, then SIGCONT.
    Pause,
    /// Cut the node from every other node and from the lab for `down`
    /// seconds (`--network lab`).
    Isolate,
    /// SIGKILL, drop the node's un-synced writes, restart after `down`
    /// seconds (`--disk lossy`).
    PowerLoss,
}

impl TriggerAction {
    /// The word in a profile.
    pub fn word(self) -> &'static str {
        match self {
            TriggerAction::Crash => "crash",
            TriggerAction::Pause => "pause",
            TriggerAction::Isolate => "isolate",
            TriggerAction::PowerLoss => "power-loss",
        }
    }
}

/// A trigger's target, parsed (see [`Trigger::target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerTarget {
    /// The worker whose log matched.
    Itself,
    /// A random member.
    Random,
    /// A random member other than the one whose log matched.
    Other,
    /// The primary now.
    Primary,
    /// Worker N.
    Worker(usize),
    /// The sink.
    Sink,
}

impl Trigger {
    /// The parsed target, or why it is not one.
    pub fn target(&self) -> Result<TriggerTarget, String> {
        Ok(match self.target.as_str() {
            "self" => TriggerTarget::Itself,
            "random" => TriggerTarget::Random,
            "other" => TriggerTarget::Other,
            "primary" => TriggerTarget::Primary,
            "sink" => TriggerTarget::Sink,
            w => match crate::soak::spec::worker_index(w) {
                Some(i) if i < crate::soak::spec::MAX_WORKERS => TriggerTarget::Worker(i),
                _ => {
                    return Err(format!(
                        "{w:?} is not self, random, other, primary, sink, initializer or workerN"
                    ))
                }
            },
        })
    }

    /// Checks every field; the error names it (`trigger.regex`...).
    fn check(&self, primary: bool) -> Result<(), (&'static str, String)> {
        regex::Regex::new(&self.regex).map_err(|e| ("trigger.regex", e.to_string()))?;
        let t = self.target().map_err(|e| ("trigger.target", e))?;
        if t == TriggerTarget::Sink && self.action != TriggerAction::Crash {
            return Err((
                "trigger.target",
                format!("the sink can only be crashed, not {}", self.action.word()),
            ));
        }
        if matches!(t, TriggerTarget::Itself | TriggerTarget::Other)
            && self.role != TriggerRole::Worker
        {
            return Err((
                "trigger.target",
                format!(
                    "{:?} needs role = \"worker\" (the worker whose log matched)",
                    self.target
                ),
            ));
        }
        if t == TriggerTarget::Primary && !primary {
            return Err((
                "trigger.target",
                "\"primary\" needs a [primary] kind in the profile".into(),
            ));
        }
        for (field, v) in [
            ("trigger.cooldown", self.cooldown),
            ("trigger.down", self.down),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err((field, format!("{v} is not a number of seconds >= 0")));
            }
        }
        Ok(())
    }
}

/// `[disk]`: how worker state directories are stored (see docs/disk.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// `plain` (default) or `lossy` (a lossyfs mount per node; `--disk`
    /// overrides it).
    #[serde(default)]
    pub mode: super::disk::DiskMode,
    /// Globs, relative to `{state}`, of the files `corrupt` and `truncate`
    /// may hit (`*` no `/`, `**/` any folders). Default: every file.
    #[serde(default = "all_files")]
    pub data_files: Vec<String>,
    /// With lossy disks: `strict` (default: a new, renamed or removed name
    /// is durable only after an fsync of its directory) or `eager` (names
    /// are durable at once; only file data waits for a sync, as in LazyFS).
    #[serde(default)]
    pub names: Names,
}

/// See [`Disk::names`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    /// Names need a directory fsync.
    #[default]
    Strict,
    /// Names are durable at once.
    Eager,
}

impl Default for Disk {
    fn default() -> Self {
        Disk {
            mode: Default::default(),
            data_files: all_files(),
            names: Names::default(),
        }
    }
}

fn all_files() -> Vec<String> {
    vec!["**".to_owned()]
}

/// How the supervisor decides that a worker is ready.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// `external`: the external query API says `processing_messages`;
    /// `healthz`: `GET /healthz` on the `external` port answers 200.
    #[serde(default)]
    pub kind: ReadinessKind,
}

/// See [`Readiness`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessKind {
    /// Cluster-status query (id 9) on the external port.
    #[default]
    External,
    /// HTTP `GET /healthz` on the external port returns 200.
    Healthz,
    /// Redis: `PING` on the `in` port answers `PONG`, and a replica's
    /// `INFO replication` says `master_link_status:up`.
    Redis,
}

impl ReadinessKind {
    /// Whether a worker is polled on its `in` port rather than its
    /// `external` one.
    pub fn polls_in_port(self) -> bool {
        self == ReadinessKind::Redis
    }
}

/// What a system supports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Workers can join and be shrunk away at run time.
    #[serde(default = "yes")]
    pub grow: bool,
    /// The fewest workers a run may start with (e.g. 3 for a profile
    /// whose first three nodes run a quorum of Sentinels); fewer is a
    /// usage error before anything starts.
    #[serde(default = "one")]
    pub min_workers: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            grow: true,
            min_workers: 1,
        }
    }
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// The guarantee the committed output is checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Exact prefix: loss, duplicate, reorder are all violations.
    #[default]
    ExactlyOnce,
    /// Duplicates of already-committed lines are counted, not violations.
    AtLeastOnce,
    /// Every input line exactly once, in any order, nothing else (a work
    /// queue: consumers share the stream); see docs/verification.md.
    WorkQueue,
    /// Every input line at least once, in any order, nothing else;
    /// duplicates are counted, not violations.
    WorkQueueAtLeastOnce,
}

impl VerifyMode {
    /// The verifier's mode.
    pub fn check_mode(self) -> verify::check::Mode {
        match self {
            VerifyMode::ExactlyOnce => verify::check::Mode::ExactlyOnce,
            VerifyMode::AtLeastOnce => verify::check::Mode::AtLeastOnce,
            VerifyMode::WorkQueue => verify::check::Mode::WorkQueue,
            VerifyMode::WorkQueueAtLeastOnce => verify::check::Mode::WorkQueueAtLeastOnce,
        }
    }
}

/// `[primary]`: how crasher asks which node is the primary (leader) now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Primary {
    /// The query.
    #[serde(default)]
    pub kind: PrimaryKind,
}

/// The queries `crash-primary` knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryKind {
    /// The profile cannot tell: `crash-primary` is refused.
    #[default]
    None,
    /// Redis: `INFO replication` on the node's `in` port says `role:master`.
    RedisRole,
}

/// Port layout of a run: worker N's port for a role is
/// `base + stride * N + offset`; the sink's is `base + sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// Ports claimed per run.
    pub block: u16,
    /// Ports per worker.
    pub stride: u16,
    /// Source listener offset.
    #[serde(rename = "in")]
    pub source: u16,
    /// Initializer control offset.
    pub control: u16,
    /// Initializer data offset.
    pub data: u16,
    /// External query offset.
    pub external: u16,
    /// Member control offset.
    pub my_control: u16,
    /// Member data offset.
    pub my_data: u16,
    /// Sink offset from the base.
    pub sink: u16,
}

/// A program and its argument template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cmd {
    /// Program: a path, a name on `PATH` or beside crasher, or `{crasher}`.
    pub program: String,
    /// Argument templates.
    pub args: Vec<String>,
    /// Extra folders to look for `program` in, before `PATH`.
    #[serde(default)]
    pub search_paths: Vec<String>,
}

/// How workers are started: common arguments plus role-specific ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerCmd {
    /// Program.
    pub program: String,
    /// Extra folders to look for `program` in, before `PATH`.
    #[serde(default)]
    pub search_paths: Vec<String>,
    /// Arguments every worker gets.
    pub args: Vec<String>,
    /// Added for the initializer.
    pub initializer_args: Vec<String>,
    /// Added for every other worker.
    pub member_args: Vec<String>,
    /// Added when a worker joins a running cluster.
    pub join_args: Vec<String>,
    /// Added when `--inject BUG` is given.
    #[serde(default)]
    pub inject_args: Vec<String>,
    /// Checkpoint interval passed as `{checkpoint_interval}`.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval: String,
}

fn default_checkpoint() -> String {
    "1s".into()
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not found anywhere.
    #[error("profile {0:?} not found (give a path, a file in env/, or one of: passthrough, tcp)")]
    NotFound(String),
    /// Unreadable.
    #[error("cannot read profile {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Malformed: the message names line, column and field.
    #[error("{origin}: {message}")]
    Parse {
        /// File or builtin name.
        origin: String,
        /// The parser's message (line, column, field).
        message: String,
    },
    /// Invalid values.
    #[error("{origin}: field {field}: {message}")]
    Invalid {
        /// File or builtin name.
        origin: String,
        /// Offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Profile {
    /// Loads `spec`: a file path, `env/<spec>.toml`, or a built-in name.
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        Profile::load_with_text(spec).map(|(p, _)| p)
    }

    /// [`Profile::load`], also returning the profile's text (so a run can
    /// keep a copy). A file profile's origin is its canonical path.
    pub fn load_with_text(spec: &str) -> Result<(Profile, String), ProfileError> {
        let path = Path::new(spec);
        let candidates = [
            path.to_path_buf(),
            Path::new("env").join(format!("{spec}.toml")),
        ];
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            let io = |source| ProfileError::Io {
                path: p.clone(),
                source,
            };
            let text = std::fs::read_to_string(p).map_err(io)?;
            let origin = p.canonicalize().map_err(io)?;
            let profile = Profile::parse(&text, &origin.display().to_string())?;
            return Ok((profile, text));
        }
        let name = spec
            .trim_end_matches(".toml")
            .rsplit('/')
            .next()
            .unwrap_or(spec);
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Ok((
                Profile::parse(text, &format!("builtin:{n}"))?,
                (*text).to_owned(),
            )),
            None => Err(ProfileError::NotFound(spec.to_owned())),
        }
    }

    /// Parses profile text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let mut p: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        p.origin = origin.to_owned();
        let invalid = |field, message: String| ProfileError::Invalid {
            origin: origin.to_owned(),
            field,
            message,
        };
        let ports = &p.ports;
        let per_worker = [
            ports.source,
            ports.control,
            ports.data,
            ports.external,
            ports.my_control,
            ports.my_data,
        ];
        if let Some(o) = per_worker.iter().find(|&&o| o >= ports.stride) {
            return Err(invalid(
                "ports",
                format!("offset {o} is not below stride {}", ports.stride),
            ));
        }
        let workers_end = ports
            .stride
            .saturating_mul(crate::soak::spec::MAX_WORKERS as u16);
        if ports.sink < workers_end || ports.sink >= ports.block {
            return Err(invalid(
                "ports.sink",
                format!(
                    "must lie in [{workers_end}, block={}) so it clashes with no worker",
                    ports.block
                ),
            ));
        }
        let roles = [
            ("in", ports.source),
            ("control", ports.control),
            ("data", ports.data),
            ("external", ports.external),
            ("my_control", ports.my_control),
            ("my_data", ports.my_data),
        ];
        for (i, (a, oa)) in roles.iter().enumerate() {
            if let Some((b, _)) = roles[i + 1..].iter().find(|(_, ob)| ob == oa) {
                return Err(invalid(
                    "ports",
                    format!(
                        "`{a}` and `{b}` both use offset {oa}: two ports of a worker would be one"
                    ),
                ));
            }
        }
        check_templates(&p, text).map_err(|(field, message)| invalid(field, message))?;
        for (i, g) in p.disk.data_files.iter().enumerate() {
            if let Err(e) = super::disk::glob_regex(g) {
                return Err(invalid("disk.data_files", format!("entry {i}: {e}")));
            }
        }
        let primary = p.primary.kind != PrimaryKind::None;
        for (i, t) in p.triggers.iter().enumerate() {
            t.check(primary)
                .map_err(|(field, m)| invalid(field, format!("[[trigger]] {}: {m}", i + 1)))?;
        }
        if let Ok(program) = std::env::var("CRASHER_WORKER_PROGRAM") {
            p.worker.program = program;
        }
        if let Ok(ci) = std::env::var("CRASHER_CHECKPOINT_INTERVAL") {
            p.worker.checkpoint_interval = ci;
        }
        Ok(p)
    }
}

/// Placeholders every process's templates may use (`Cluster::base_vars`).
pub const BASE_PLACEHOLDERS: &[&str] = &[
    "crasher",
    "run_dir",
    "run_id",
    "sink",
    "sink_prefix",
    "sink_dir",
    "host",
    "initializer_in",
    "initializer_control",
    "initializer_data",
    "initializer_external",
    "worker_count",
    "rate",
    "checkpoint_interval",
    "inject",
    "routes",
    "servers",
    "addrs",
    "control_addrs",
    "workload_epoch",
];

/// Placeholders only a worker's templates may use (`Cluster::worker_launch`).
pub const WORKER_PLACEHOLDERS: &[&str] = &[
    "name",
    "index",
    "state",
    "in",
    "external",
    "control",
    "data",
    "my_control",
    "my_data",
];

/// Placeholders only a feeder's templates may use (`Cluster::feeder_launch`).
pub const FEEDER_PLACEHOLDERS: &[&str] = &["key", "input", "status", "log", "workload"];

/// The `{names}` of `template`, or what is wrong with its braces.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// The 1-based line of `text` where `needle` first appears.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let at = text.find(needle)?;
    Some(text[..at].matches('\n').count() + 1)
}

/// Checks every template of `p` before anything starts: each placeholder
/// must be one its process gets, and braces must close. The error names
/// the field and, where it can be found in `text`, the line.
fn check_templates(p: &Profile, text: &str) -> Result<(), (&'static str, String)> {
    let worker: Vec<&str> = BASE_PLACEHOLDERS
        .iter()
        .chain(WORKER_PLACEHOLDERS)
        .copied()
        .collect();
    let feeder: Vec<&str> = BASE_PLACEHOLDERS
        .iter()
        .chain(FEEDER_PLACEHOLDERS)
        .copied()
        .collect();
    let w = &p.worker;
    let groups: [(&'static str, &[String], &[&str]); 7] = [
        ("worker.args", &w.args, &worker),
        ("worker.initializer_args", &w.initializer_args, &worker),
        ("worker.member_args", &w.member_args, &worker),
        ("worker.join_args", &w.join_args, &worker),
        ("worker.inject_args", &w.inject_args, &worker),
        ("sink.args", &p.sink.args, BASE_PLACEHOLDERS),
        ("feeder.args", &p.feeder.args, &feeder),
    ];
    let at = |needle: &str| match line_of(text, needle) {
        Some(n) => format!("line {n}: "),
        None => String::new(),
    };
    for (field, templates, known) in groups.iter() {
        for t in templates.iter() {
            let names = placeholders(t).map_err(|e| {
                let tail = &t[t.rfind('{').unwrap_or(0)..];
                let first = tail.lines().next().unwrap_or(tail);
                (*field, format!("{}{e}", at(first)))
            })?;
            if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
                return Err((
                    *field,
                    format!(
                        "{}unknown placeholder {{{bad}}} (this process gets: {})",
                        at(&format!("{{{bad}}}")),
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    for (field, program) in [
        ("worker.program", &w.program),
        ("sink.program", &p.sink.program),
        ("feeder.program", &p.feeder.program),
    ] {
        if program.contains('{') && program != "{crasher}" {
            return Err((
                field,
                format!(
                    "{}a program is a path, a name or `{{crasher}}`, not {program:?}",
                    at(program)
                ),
            ));
        }
    }
    Ok(())
}

/// Values for template placeholders.
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    /// Sets `{name}`.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name, value.into());
        self
    }

    /// Fills every `{placeholder}` of `template`; an unknown one is an error
    /// naming it.
    pub fn fill(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
            let name = &after[..close];
            let value = self
                .0
                .get(name)
                .ok_or_else(|| format!("unknown placeholder {{{name}}} in {template:?}"))?;
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Fills a whole argument list.
    pub fn fill_all(&self, templates: &[String]) -> Result<Vec<String>, String> {
        templates.iter().map(|t| self.fill(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_in_env_parses_with_valid_data_file_globs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../env");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let prof = Profile::load(&p.display().to_string())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(!prof.disk.data_files.is_empty(), "{}", p.display());
                n += 1;
            }
        }
        assert!(n >= 4, "{n} profiles in {}", dir.display());
        let bad = "[disk]\ndata_files = [\"a\"]\nmode = \"sideways\"\n";
        let e = Profile::parse(&format!("{}{bad}", BUILTIN[1].1), "t.toml").unwrap_err();
        assert!(e.to_string().contains("sideways"), "{e}");
    }

    /// The built-in passthrough profile's text with `from` replaced by `to`.
    fn passthrough_with(from: &str, to: &str) -> String {
        let text = BUILTIN.iter().find(|(n, _)| *n == "passthrough").unwrap().1;
        assert!(text.contains(from), "{from:?} not in the built-in profile");
        text.replacen(from, to, 1)
    }

    #[test]
    fn an_unknown_placeholder_is_refused_at_load_naming_field_and_line() {
        let text = passthrough_with("\"{name}\"", "\"{nmae}\"");
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("{nmae}")).unwrap() + 1;
        assert!(e.starts_with("p.toml: field worker.args: "), "{e}");
        assert!(
            e.contains(&format!("line {line}: unknown placeholder {{nmae}}")),
            "{e}"
        );
        // A placeholder only workers get is unknown to the feeder.
        let text = passthrough_with("\"{input}\"", "\"{state}\"");
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(e.contains("field feeder.args"), "{e}");
        assert!(e.contains("unknown placeholder {state}"), "{e}");
    }

    #[test]
    fn an_unclosed_brace_is_refused_at_load_with_its_line() {
        let text = passthrough_with("\"{name}\"", "\"{name\"");
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("\"{name\"")).unwrap() + 1;
        assert!(e.contains("field worker.args"), "{e}");
        assert!(e.contains(&format!("line {line}: unclosed `{{`")), "{e}");
    }

    #[test]
    fn two_roles_on_one_port_offset_are_refused() {
        let text = passthrough_with("my_data = 5", "my_data = 2");
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(e.contains("field ports"), "{e}");
        assert!(e.contains("`data` and `my_data` both use offset 2"), "{e}");
    }

    #[test]
    fn a_program_with_a_placeholder_other_than_crasher_is_refused() {
        let text = passthrough_with("program = \"{crasher}\"", "program = \"{run_dir}/w\"");
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(e.contains("field worker.program"), "{e}");
    }

    #[test]
    fn verify_modes_parse_including_the_work_queue_ones() {
        for (word, mode) in [
            ("exactly-once", VerifyMode::ExactlyOnce),
            ("at-least-once", VerifyMode::AtLeastOnce),
            ("work-queue", VerifyMode::WorkQueue),
            ("work-queue-at-least-once", VerifyMode::WorkQueueAtLeastOnce),
        ] {
            let text = format!("verify_mode = \"{word}\"\n{}", BUILTIN[0].1);
            let p = Profile::parse(&text, "p.toml").unwrap();
            assert_eq!(p.verify_mode, mode);
            assert_eq!(p.verify_mode.check_mode().as_str(), word);
        }
        let text = format!("verify_mode = \"work_queue\"\n{}", BUILTIN[0].1);
        let e = Profile::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("work-queue-at-least-once"),
            "{e}"
        );
    }

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let p = Profile::load(name).unwrap();
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn a_bad_profile_names_line_and_field() {
        let text = BUILTIN[0]
            .1
            .replace("stride = 10", "stride = 10\nfrobs = 3");
        let err = Profile::parse(&text, "env/bad.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("env/bad.toml: "), "{err}");
        assert!(err.contains("line 11") && err.contains("frobs"), "{err}");
        let text = BUILTIN[0].1.replace("sink = 100", "sink = 5");
        let err = Profile::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("field ports.sink"), "{err}");
    }

    #[test]
    fn triggers_are_checked_at_load_naming_the_field() {
        let with = |t: &str| format!("{}\n[[trigger]]\n{t}\n", BUILTIN[0].1);
        let ok = Profile::parse(
            &with("role = \"worker\"\nregex = \"elected\"\naction = \"crash\"\nonce = true"),
            "x.toml",
        )
        .unwrap();
        assert_eq!(ok.triggers.len(), 1);
        assert_eq!(ok.triggers[0].target(), Ok(TriggerTarget::Itself));
        assert!((ok.triggers[0].cooldown - 5.0).abs() < 1e-9);
        let err = |t: &str| Profile::parse(&with(t), "x.toml").unwrap_err().to_string();
        let e = err("role = \"worker\"\nregex = \"(\"\naction = \"crash\"");
        assert!(
            e.contains("field trigger.regex") && e.contains("[[trigger]] 1"),
            "{e}"
        );
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"crash\"\ntarget = \"worker12\"");
        assert!(e.contains("field trigger.target"), "{e}");
        let e = err("role = \"sink\"\nregex = \"x\"\naction = \"crash\"");
        assert!(
            e.contains("field trigger.target") && e.contains("role"),
            "{e}"
        );
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"pause\"\ntarget = \"sink\"");
        assert!(e.contains("field trigger.target"), "{e}");
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"crash\"\ntarget = \"primary\"");
        assert!(e.contains("[primary]"), "{e}");
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"crash\"\ncooldown = -1.0");
        assert!(e.contains("field trigger.cooldown"), "{e}");
        // Unknown actions and fields: the TOML error names line and field.
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"explode\"");
        assert!(e.contains("explode") && e.contains("line"), "{e}");
        let e = err("role = \"worker\"\nregex = \"x\"\naction = \"crash\"\nwhen = 1");
        assert!(e.contains("when") && e.contains("line"), "{e}");
    }

    #[test]
    fn the_documented_trigger_examples_load() {
        let doc = include_str!("../../../docs/faults.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.contains("[[trigger]]"))
            .collect();
        assert_eq!(blocks.len(), 3, "the examples of docs/faults.md");
        for b in blocks {
            let base = if b.contains("LINES") {
                "nats-jetstream"
            } else if b.contains("switch-master") {
                "redis-sentinel"
            } else {
                "passthrough"
            };
            let text = BUILTIN.iter().find(|(n, _)| *n == base).unwrap().1;
            let p = Profile::parse(&format!("{text}\n{b}"), base)
                .unwrap_or_else(|e| panic!("{base} + {b}: {e}"));
            let t = &p.triggers[0];
            let re = regex::Regex::new(&t.regex).unwrap();
            let sample = match base {
                "nats-jetstream" => "[7] 2026/12/03 12:00:00.000000 [INF] JetStream cluster new stream leader for '$G > LINES'",
                "redis-sentinel" => "12:X 03 Dec 2026 12:00:00.000 # +switch-master crasher 127.0.0.1 7100 127.0.0.1 7110",
                _ => "2026-12-03T12:00:00.000000Z  INFO passthrough: worker worker1, start #2 (recovering)",
            };
            assert!(re.is_match(sample), "{} does not match {sample}", t.regex);
        }
    }

    #[test]
    fn templates_fill_and_reject_unknowns() {
        let mut v = Vars::default();
        v.set("in", "127.0.0.1:7100").set("name", "worker1");
        assert_eq!(v.fill("{name}@{in}").unwrap(), "worker1@127.0.0.1:7100");
        assert!(v.fill("{nope}").unwrap_err().contains("{nope}"));
        assert!(v.fill("{in").is_err());
    }
}
