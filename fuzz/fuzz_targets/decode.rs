//! Feeds arbitrary bytes to the frame, 2PC and external decoders: none may
//! panic, and nothing may be buffered beyond the frame limit.
#![no_main]

use bytes::{Bytes, BytesMut};
use connector::external::ExternalCodec;
use connector::{ConnectorCodec, Frame, TwoPc};
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| {
    let codec = ConnectorCodec::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode_frame(&mut buf) {
        if let Frame::Message(m) = frame {
            let _ = TwoPc::decode(m.payload);
        }
    }
    assert!(buf.capacity() <= data.len().max(4 + 4096) + 64);
    let _ = TwoPc::decode(Bytes::copy_from_slice(data));
    let mut ext = BytesMut::from(data);
    let _ = tokio_util::codec::Decoder::decode(&mut ExternalCodec, &mut ext);
});
