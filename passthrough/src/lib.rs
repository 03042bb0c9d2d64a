//! passthrough: the reference streaming cluster crasher soaks out of the
//! box, effectively-once under every fault crasher injects, with bug
//! switches to prove crasher catches what it should.
//!
//! One process per worker. Feeders connect to any worker's source; each
//! line is routed by its first byte to the worker that owns that key, over
//! worker-to-worker data links; each owner writes its lines to the 2PC
//! sink on its own connection. The initializer also runs the coordinator:
//! a global, aligned checkpoint every interval (barriers behind the routed
//! lines, each owner's phase-1 vote, a durable commit decision, then phase
//! 2), feeders acked only for committed data, and a rollback of the whole
//! cluster to the last committed checkpoint on any failure. See
//! docs/passthrough.md for the design and why it is correct.
//!
//! # Layout
//! - [`cli`]: command line.
//! - [`ctl`], [`control`]: the control protocol and its connections.
//! - [`coord`]: the coordinator (initializer only).
//! - [`worker`]: the agent carrying out the coordinator's orders.
//! - [`ingress`]: the connector-protocol source server for feeders.
//! - [`route`]: routing table, gate, stream registry.
//! - [`data`], [`links`]: worker-to-worker data links.
//! - [`owner`], [`sinkconn`]: the 2PC sink client.
//! - [`durable`]: state that survives a crash.
//! - [`external`]: status and shrink queries.
//! - [`bugs`]: switchable bugs.
//! - [`tcpmode`]: TCP mode (`--source tcp --sink tcp`): a plain TCP source
//!   and sink in place of the connector ingress and the 2PC owner.

pub mod bugs;
pub mod cli;
pub mod control;
pub mod coord;
pub mod ctl;
pub mod data;
pub mod durable;
pub mod external;
pub mod ingress;
pub mod links;
pub mod owner;
pub mod route;
pub mod sinkconn;
pub mod tcpmode;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::info;

use crate::bugs::{Bug, Bugs};
use crate::cli::Args;
use crate::coord::{CoordConfig, CoordEvent, Coordinator};
use crate::ctl::ToCoord;
use crate::durable::{write_replace, WorkerState};
use crate::external::View;
use crate::ingress::Ingress;
use crate::links::Links;
use crate::route::Router;
use crate::sinkconn::SinkConfig;

/// Entry point of the binary: exit 0 after leaving the cluster, 2 on a
/// usage or environment error.
///
/// A leading `passthrough` word is skipped, so the built-in profile's
/// arguments (written for `crasher passthrough ...`) also drive this binary
/// when `CRASHER_WORKER_PROGRAM` points at it.
pub fn main_impl() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "passthrough") {
        argv.remove(1);
    }
    main_with(Args::parse_from(argv))
}

/// Runs one worker from parsed arguments, with its own logging: shared by
/// the `passthrough` binary and `crasher passthrough`, so the reference
/// cluster is there wherever the `crasher` binary is.
pub fn main_with(args: Args) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PASSTHROUGH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    if let Err(e) = args.validate() {
        eprintln!("passthrough: {e}");
        return ExitCode::from(verdict::USAGE);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("passthrough: cannot start the runtime: {e}");
            return ExitCode::from(verdict::USAGE);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passthrough: {e:#}");
            ExitCode::from(verdict::USAGE)
        }
    }
}

/// The next connection on `listener` (the `what` listener, for the log),
/// with Nagle off: a failed accept (out of file descriptors, say) is
/// logged and retried after a pause instead of ending the listener.
pub async fn accept(listener: &TcpListener, what: &str) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!("{what} listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn bind(addr: &str, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    let a = l.local_addr()?;
    info!("listening on {a} ({what})");
    Ok((l, a))
}

/// Runs one worker until it leaves the cluster (or is killed).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let name = args.worker_name();
    crate::durable::set_skip_fsync(args.inject == Some(Bug::SkipFsync));
    let ws = WorkerState::start(&args.resilience_dir, &name)
        .with_context(|| format!("resilience dir {}", args.resilience_dir.display()))?;
    let restarted = ws.incarnation > 1;
    info!(
        "worker {name}, start #{} ({})",
        ws.incarnation,
        if restarted { "recovering" } else { "fresh" }
    );
    let bugs = Bugs::new(args.inject, restarted);
    if let Some(b) = args.inject {
        info!("injected bug on: {b:?}");
    }
    if args.inject == Some(Bug::DieRandomly) {
        let secs = 5.0 + rand::random::<f64>() * 15.0;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            eprintln!("passthrough: injected bug die-randomly: exiting with status 1");
            std::process::exit(1);
        });
    }

    let (src_l, src_a) = bind(&args.source.addr, "source").await?;
    let (ext_l, ext_a) = bind(&args.external, "external").await?;
    let data_addr = if args.cluster_initializer {
        args.data.clone()
    } else {
        args.my_data.clone()
    }
    .unwrap_or_else(|| "127.0.0.1:0".into());
    let (data_l, data_a) = bind(&data_addr, "data").await?;
    let mut ready = BTreeMap::new();
    ready.insert("name", serde_json::json!(name));
    ready.insert("pid", serde_json::json!(std::process::id()));
    ready.insert("source", serde_json::json!(src_a.to_string()));
    ready.insert("external", serde_json::json!(ext_a.to_string()));
    ready.insert("data", serde_json::json!(data_a.to_string()));
    let control_l = if args.cluster_initializer {
        let addr = args.control.clone().unwrap_or_default();
        let (l, a) = bind(&addr, "control").await?;
        ready.insert("control", serde_json::json!(a.to_string()));
        Some(l)
    } else {
        if let Some(mc) = &args.my_control {
            // Bound so the port map holds; control traffic runs on the
            // connection to the initializer.
            let (l, a) = bind(mc, "my-control, unused").await?;
            ready.insert("my_control", serde_json::json!(a.to_string()));
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            });
        }
        None
    };
    if let Some(path) = &args.ready_file {
        let json = serde_json::to_vec(&ready)?;
        write_replace(path, &json).with_context(|| format!("--ready-file {}", path.display()))?;
    }

    let view = Arc::new(View::default());
    let router = Arc::new(Router::new(&name));
    let (owner_in_tx, owner_in_rx) = mpsc::channel(1024);
    let (owner_cmd_tx, owner_cmd_rx) = mpsc::unbounded_channel();
    let (owner_ev_tx, owner_ev_rx) = mpsc::unbounded_channel();
    let (uplink_tx, mut uplink_rx) = mpsc::unbounded_channel::<ToCoord>();
    let (coord_tx, coord_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let (fault_tx, fault_rx) = mpsc::unbounded_channel();
    let links = Arc::new(Links::new(&name, owner_in_tx.clone(), fault_tx));
    let ingress = Ingress::new(
        router.clone(),
        uplink_tx.clone(),
        args.source.clone(),
        args.cookie.clone(),
        bugs.clone(),
    );
    if args.tcp_mode() {
        // The connector ingress stays idle (the agent's calls on it find no
        // feeders); the plain TCP ends take the source and the sink.
        info!(
            "TCP mode: plain TCP source on {src_a}, plain TCP sink to {}",
            args.out
        );
        tokio::spawn(tcpmode::sink::run(
            name.clone(),
            args.out.clone(),
            owner_cmd_rx,
            owner_in_rx,
            owner_ev_tx,
        ));
        tokio::spawn(tcpmode::source::serve(
            src_l,
            router.clone(),
            uplink_tx.clone(),
        ));
    } else {
        let sink_rec = durable::SinkState::load(&args.resilience_dir)
            .with_context(|| format!("resilience dir {}", args.resilience_dir.display()))?;
        tokio::spawn(owner::run(
            SinkConfig {
                name: name.clone(),
                addr: args.out.clone(),
                cookie: args.cookie.clone(),
                dir: args.resilience_dir.clone(),
            },
            sink_rec,
            bugs.clone(),
            owner_cmd_rx,
            owner_in_rx,
            owner_ev_tx,
        ));
        tokio::spawn(ingress::serve(src_l, ingress.clone()));
    }
    tokio::spawn(links::serve(data_l, owner_in_tx));
    let mut keep_status = None;
    let hello = ToCoord::Hello {
        name: name.clone(),
        join: args.join.is_some(),
        data: data_a.to_string(),
        source: src_a.to_string(),
        instance: ctl::instance_id(),
    };
    if let Some(control_l) = control_l {
        let coord = Coordinator::new(
            CoordConfig {
                me: name.clone(),
                dir: args.resilience_dir.clone(),
                worker_count: args.worker_count,
                interval: args.checkpoint_interval,
                source: src_a.to_string(),
            },
            view.clone(),
        )?;
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let ToCoord::Hello {
            name: n,
            data,
            source,
            instance,
            ..
        } = hello
        else {
            unreachable!("hello is a Hello");
        };
        ev_tx
            .send(CoordEvent::Hello {
                conn: 0,
                tx: coord_tx,
                name: n,
                join: false,
                data,
                source,
                instance,
            })
            .await
            .ok();
        let fwd = ev_tx.clone();
        let me = name.clone();
        tokio::spawn(async move {
            while let Some(msg) = uplink_rx.recv().await {
                let ev = CoordEvent::Msg {
                    name: me.clone(),
                    conn: 0,
                    msg,
                };
                if fwd.send(ev).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(control::serve(control_l, ev_tx.clone()));
        tokio::spawn(external::serve(
            ext_l,
            view.clone(),
            router.clone(),
            Some(ev_tx),
        ));
        tokio::spawn(coord.run(ev_rx));
        // The initializer's link never goes down: its status sender just
        // lives as long as the worker.
        keep_status = Some(status_tx);
    } else {
        tokio::spawn(external::serve(ext_l, view.clone(), router.clone(), None));
        let addr = args
            .join
            .clone()
            .or(args.control.clone())
            .unwrap_or_default();
        tokio::spawn(control::member_link(
            addr, hello, uplink_rx, coord_tx, status_tx,
        ));
    }
    worker::run(
        worker::Parts {
            name,
            initializer: args.cluster_initializer,
            router,
            ingress,
            links,
            owner: owner_cmd_tx,
            uplink: uplink_tx,
            view,
            bugs,
        },
        worker::Inputs {
            coord: coord_rx,
            status: status_rx,
            owner: owner_ev_rx,
            faults: fault_rx,
        },
    )
    .await;
    drop(keep_status);
    Ok(())
}
