//! One worker's connection to the 2PC sink (the worker is the client):
//! connect and handshake (HELLO `v0.0.1`, NOTIFY stream 1,
//! LIST_UNCOMMITTED), then a writer half kept by the owner and a reader
//! task that forwards the sink's frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use connector::{ConnectorCodec, Frame, TwoPc, DATA_STREAM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

/// Largest frame the sink may send us.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Reads connector frames from a byte stream.
pub struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    codec: ConnectorCodec,
}

impl FrameReader {
    /// Reader over `rd`.
    pub fn new(rd: OwnedReadHalf) -> FrameReader {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
            codec: ConnectorCodec::new(MAX_FRAME),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            match self.codec.decode_frame(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable frame from the sink: {e}")),
            }
            self.buf.reserve(64 * 1024);
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("the sink closed mid-frame".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The writing half of a sink connection.
pub struct SinkWriter {
    wr: OwnedWriteHalf,
    buf: BytesMut,
    codec: ConnectorCodec,
}

impl SinkWriter {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        self.buf.clear();
        self.codec
            .encode_frame(frame, &mut self.buf)
            .map_err(|e| e.to_string())?;
        self.wr
            .write_all(&self.buf)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a 2PC message on stream 0.
    pub async fn two_pc(&mut self, msg: &TwoPc) -> Result<(), String> {
        let f = Frame::two_pc(msg).map_err(|e| e.to_string())?;
        self.send(&f).await
    }

    /// Sends output bytes at `offset` on stream 1.
    pub async fn data(&mut self, offset: u64, payload: Bytes) -> Result<(), String> {
        self.send(&Frame::Message(connector::Message {
            stream_id: DATA_STREAM,
            message_id: offset,
            event_time: 0,
            key: None,
            payload,
        }))
        .await
    }

    /// NOTIFY stream 1 (the reply's point of reference is the sink's
    /// output offset for this worker).
    pub async fn notify(&mut self, por: u64) -> Result<(), String> {
        self.send(&Frame::Notify {
            stream_id: DATA_STREAM,
            stream_name: Bytes::from_static(b"Passthrough"),
            point_of_ref: por,
        })
        .await
    }
}

/// A fresh, handshaken sink connection.
pub struct Connected {
    /// Writer half.
    pub writer: SinkWriter,
    /// Reader half, past the handshake.
    pub reader: FrameReader,
    /// The point of reference of the sink's NOTIFY_ACK: crasher's sink
    /// answers its output offset after its recovery cut, the original
    /// answers from a per-process table (0 after its restart). Only a
    /// cross-check: the owner resumes from its own record.
    pub offset: u64,
    /// Transactions the sink holds a phase-1 vote for, awaiting PHASE2.
    pub pending: Vec<String>,
}

/// Who connects.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Worker name (the sink's file name).
    pub name: String,
    /// Sink address.
    pub addr: String,
    /// Cookie.
    pub cookie: String,
    /// The worker's resilience directory, where its own record of its sink
    /// output lives (`sink.json`, see [`crate::durable::SinkState`]).
    pub dir: std::path::PathBuf,
}

/// Connects and handshakes once.
pub async fn connect(cfg: &SinkConfig, committed_hint: u64) -> Result<Connected, String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut writer = SinkWriter {
        wr,
        buf: BytesMut::with_capacity(1024 * 1024 + 64),
        codec: ConnectorCodec::new(MAX_FRAME),
    };
    let mut reader = FrameReader::new(rd);
    writer
        .send(&Frame::Hello {
            version: connector::SINK_VERSION.into(),
            cookie: cfg.cookie.clone(),
            program_name: "Passthrough".into(),
            instance_name: cfg.name.clone(),
        })
        .await?;
    writer.notify(committed_hint).await?;
    writer.two_pc(&TwoPc::ListUncommitted { rtag: 0 }).await?;
    let mut offset = None;
    let mut pending = None;
    let handshake = async {
        while offset.is_none() || pending.is_none() {
            match reader.next().await? {
                Some(Frame::Ok { .. }) => {}
                Some(Frame::NotifyAck {
                    success: true,
                    point_of_ref,
                    ..
                }) => offset = Some(point_of_ref),
                Some(Frame::NotifyAck { success: false, .. }) => {
                    return Err("the sink refused NOTIFY".to_string())
                }
                Some(Frame::Error { message }) => return Err(format!("the sink said: {message}")),
                Some(Frame::Message(m)) if m.stream_id == connector::CONTROL_STREAM => {
                    match TwoPc::decode(m.payload) {
                        Ok(TwoPc::ReplyUncommitted { txn_ids, .. }) => pending = Some(txn_ids),
                        Ok(other) => debug!("sink handshake: ignoring {}", other.name()),
                        Err(e) => return Err(format!("bad 2PC message from the sink: {e}")),
                    }
                }
                Some(other) => debug!("sink handshake: ignoring {}", other.name()),
                None => return Err("the sink closed during the handshake".to_string()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .map_err(|_| "sink handshake timed out".to_string())??;
    Ok(Connected {
        writer,
        reader,
        offset: offset.unwrap_or(0),
        pending: pending.unwrap_or_default(),
    })
}

/// A frame from sink connection `conn`, or its end (`None`).
#[derive(Debug)]
pub struct SinkMsg {
    /// Connection number.
    pub conn: u64,
    /// The frame, or `None` when the connection ended.
    pub frame: Option<Frame>,
}

/// Forwards frames from `reader` to `tx` until the connection ends.
pub async fn pump(conn: u64, mut reader: FrameReader, tx: mpsc::UnboundedSender<SinkMsg>) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) => {
                if tx
                    .send(SinkMsg {
                        conn,
                        frame: Some(frame),
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!("sink connection {conn}: {e}");
                break;
            }
        }
    }
    let _ = tx.send(SinkMsg { conn, frame: None });
}
