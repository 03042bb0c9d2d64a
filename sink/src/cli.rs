//! `crasher sink`: parse arguments, set up the log, serve until halted.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tracing::dispatcher::DefaultGuard;
use tracing::{info, Dispatch};

use crate::logging::{self, fatal};
use crate::rules::Rules;
use crate::server::{Config, PorMode, Server};

/// Arguments of `crasher sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on; port 0 picks a free port (see --ready-file).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7200")]
    pub listen: SocketAddr,
    /// Output prefix: each worker W gets PREFIX.W (data) and PREFIX.W.txnlog.
    #[arg(long, value_name = "PREFIX")]
    pub output: PathBuf,
    /// TOML file of abort rules (fault injection); none by default.
    #[arg(long, value_name = "FILE")]
    pub abort_rules: Option<PathBuf>,
    /// Cookie workers must present in HELLO.
    #[arg(long, value_name = "C", default_value = connector::DEFAULT_COOKIE)]
    pub cookie: String,
    /// Append the log here instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Once listening, write the bound address here (atomically).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// NOTIFY_ACK's point of reference: `offset`, the worker's output
    /// offset after recovery (default), or `original`, as aloc_sink: from a
    /// per-process table (0 after a sink restart).
    #[arg(long, value_enum, value_name = "MODE", default_value = "offset")]
    pub por: PorMode,
    /// Report phase events (PHASE1 voted, vote sent, PHASE2, recovery) as
    /// datagrams to the Unix socket at PATH, best effort; the supervisor
    /// may arm a hold at the next event through PATH.sink (docs/protocol.md).
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
}

thread_local! {
    /// Keeps the sink's subscriber installed on each runtime thread.
    static GUARD: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Runs the sink until a violation (exit 66) or an environment error (exit
/// 2) stops it; the harness normally SIGKILLs it first.
pub fn run(args: SinkArgs) -> anyhow::Result<ExitCode> {
    let dispatch = logging::dispatch(args.log.as_deref()).with_context(|| {
        format!(
            "cannot open log file {}",
            args.log.as_deref().unwrap_or(Path::new("-")).display()
        )
    })?;
    // The crasher binary installed a global subscriber with level labels;
    // the sink uses its own on every thread it runs.
    tracing::dispatcher::with_default(&dispatch, || serve(args, &dispatch))
}

fn serve(args: SinkArgs, dispatch: &Dispatch) -> anyhow::Result<ExitCode> {
    let rules = match &args.abort_rules {
        Some(p) => Rules::load(p)?,
        None => Rules::none(),
    };
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let d = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let g = tracing::dispatcher::set_default(&d);
            GUARD.with(|c| *c.borrow_mut() = Some(g));
        })
        .on_thread_stop(|| GUARD.with(|c| drop(c.borrow_mut().take())))
        .build()
        .context("cannot start the async runtime")?;
    let config = Config {
        prefix: args.output.clone(),
        cookie: args.cookie.clone(),
        rules,
        por: args.por,
    };
    let n_rules = config.rules.rules().len();
    let code = rt.block_on(async {
        let server = match Server::bind(args.listen, config).await {
            Ok(s) => s,
            Err(e) => {
                fatal(format_args!("cannot listen on {}: {e}", args.listen));
                anyhow::bail!("cannot listen on {}: {e}", args.listen);
            }
        };
        let addr = server.local_addr()?;
        if let Some(path) = &args.events {
            let events = crate::events::Events::to(path)
                .with_context(|| format!("cannot make an event socket for {}", path.display()))?;
            server.set_events(std::sync::Arc::new(events));
        }
        info!(
            "Process started: output prefix {}, {n_rules} abort rule(s)",
            args.output.display()
        );
        info!("listening on {addr}");
        if let Some(path) = &args.ready_file {
            write_ready_file(path, addr)?;
        }
        Ok(server.run().await)
    })?;
    rt.shutdown_background();
    Ok(ExitCode::from(code))
}

/// Writes `addr` to `path` via a temporary file and a rename, so a reader
/// never sees a partial address.
pub fn write_ready_file(path: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{addr}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
