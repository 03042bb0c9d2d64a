//! Byte-exact worked examples and property tests of the connector codecs.

use bytes::{Bytes, BytesMut};
use connector::codec::encode_to_bytes;
use connector::{ConnectorCodec, Frame, FrameError, Message, TwoPc};
use proptest::prelude::*;

fn original_hello() -> Frame {
    Frame::Hello {
        version: "0.0.1".into(),
        cookie: "Dragons-Love-Tacos".into(),
        program_name: "celsius at least once".into(),
        instance_name: "instance".into(),
    }
}

#[test]
fn the_original_feeders_hello_is_byte_exact() {
    let bytes = encode_to_bytes(&original_hello()).unwrap();
    let mut expected = vec![0x00, 0x00, 0x00, 0x3d, 0x00];
    for field in [
        "0.0.1",
        "Dragons-Love-Tacos",
        "celsius at least once",
        "instance",
    ] {
        expected.extend_from_slice(&(field.len() as u16).to_be_bytes());
        expected.extend_from_slice(field.as_bytes());
    }
    assert_eq!(&bytes[..], &expected[..]);
    assert_eq!(
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        61
    );
    assert_eq!(&bytes[..7], &[0, 0, 0, 0x3d, 0, 0, 5]);
}

#[test]
fn a_message_with_one_49_byte_line_of_key_a_has_length_97() {
    let line = b"A0000000 b8a4 f82d a061 8b10 d399 f00e f938 ceaf\n";
    assert_eq!(line.len(), 49);
    let name = b"/tmp/input-file.A.txt";
    let frame = Frame::Message(Message {
        stream_id: connector::stream_id_for(name),
        message_id: 0,
        event_time: 0,
        key: Some(Bytes::from_static(name)),
        payload: Bytes::from_static(line),
    });
    let bytes = encode_to_bytes(&frame).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 97, 5]);
    assert_eq!(&bytes[5..13], &0x26a1_f88b_80d2_ec70u64.to_be_bytes());
    assert_eq!(&bytes[13..21], &[0; 8]);
    assert_eq!(&bytes[21..29], &[0; 8]);
    assert_eq!(&bytes[29..31], &[0, 21]);
    assert_eq!(&bytes[31..52], name);
    assert_eq!(&bytes[52..], line);
    assert_eq!(bytes.len(), 4 + 97);
}

#[test]
fn a_partial_frame_needs_more_bytes_at_every_split_point() {
    let frame = original_hello();
    let bytes = encode_to_bytes(&frame).unwrap();
    let codec = ConnectorCodec::default();
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert!(
            codec.decode_frame(&mut buf).unwrap().is_none(),
            "cut at {cut}"
        );
        buf.extend_from_slice(&bytes[cut..]);
        assert_eq!(codec.decode_frame(&mut buf).unwrap(), Some(frame.clone()));
        assert!(buf.is_empty());
    }
}

#[test]
fn an_oversized_length_is_refused_before_any_allocation() {
    let codec = ConnectorCodec::new(1024);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 5][..]);
    let cap_before = buf.capacity();
    assert!(matches!(
        codec.decode_frame(&mut buf),
        Err(FrameError::TooLarge {
            len: 0xffff_fff0,
            max: 1024
        })
    ));
    assert_eq!(buf.capacity(), cap_before);
}

#[test]
fn malformed_bodies_get_typed_errors() {
    let codec = ConnectorCodec::default();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0, 0, 0, 0], "Empty"),
        (vec![0, 0, 0, 1, 42], "UnknownTag"),
        (vec![0, 0, 0, 3, 1, 0, 0], "Truncated"),
        (vec![0, 0, 0, 6, 1, 0, 0, 0, 1, 9], "TrailingBytes"),
        ([vec![0, 0, 0, 18, 4, 2], vec![0; 16]].concat(), "BadBool"),
        (
            vec![0, 0, 0, 9, 6, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            "Truncated",
        ),
        (vec![0, 0, 0, 4, 2, 0, 1, 0xff], "NotUtf8"),
    ];
    for (bytes, want) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        let err = codec.decode_frame(&mut buf).unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{bytes:?}: {err:?}");
    }
}

#[test]
fn two_pc_messages_travel_in_stream_zero() {
    let msg = TwoPc::Phase1 {
        txn_id: "Passthrough-w-worker1-id-7:c_id=5".into(),
        where_list: vec![(1, 0, 4900)],
    };
    let Frame::Message(m) = Frame::two_pc(&msg).unwrap() else {
        panic!("not a message");
    };
    assert_eq!(
        (m.stream_id, m.message_id, m.event_time, m.key.clone()),
        (0, 0, 0, None)
    );
    assert_eq!(m.payload[0], 203);
    assert_eq!(TwoPc::decode(m.payload).unwrap(), msg);
    assert!(TwoPc::decode(Bytes::from_static(&[207])).is_err());
    assert!(TwoPc::decode(Bytes::from_static(&[
        202, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff
    ]))
    .is_err());
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn arb_text() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (arb_text(), arb_text(), arb_text(), arb_text()).prop_map(|(a, b, c, d)| Frame::Hello {
            version: a,
            cookie: b,
            program_name: c,
            instance_name: d
        }),
        any::<u32>().prop_map(|c| Frame::Ok { initial_credits: c }),
        arb_text().prop_map(|m| Frame::Error { message: m }),
        (any::<u64>(), arb_bytes(), any::<u64>()).prop_map(|(s, n, p)| Frame::Notify {
            stream_id: s,
            stream_name: n,
            point_of_ref: p
        }),
        (any::<bool>(), any::<u64>(), any::<u64>()).prop_map(|(ok, s, p)| Frame::NotifyAck {
            success: ok,
            stream_id: s,
            point_of_ref: p
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            arb_bytes(),
            arb_bytes()
        )
            .prop_map(|(s, id, t, k, p)| Frame::Message(Message {
                stream_id: s,
                message_id: id,
                event_time: t,
                key: (!k.is_empty()).then_some(k),
                payload: p
            })),
        (
            any::<u32>(),
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8)
        )
            .prop_map(|(c, a)| Frame::Ack {
                credits: c,
                acks: a
            }),
        proptest::option::of("[a-z0-9.:]{1,30}").prop_map(|a| Frame::Restart { address: a }),
        any::<u64>().prop_map(|s| Frame::Eos { stream_id: s }),
    ]
}

fn arb_two_pc() -> impl Strategy<Value = TwoPc> {
    prop_oneof![
        any::<u64>().prop_map(|r| TwoPc::ListUncommitted { rtag: r }),
        (any::<u64>(), proptest::collection::vec(arb_text(), 0..4)).prop_map(|(r, t)| {
            TwoPc::ReplyUncommitted {
                rtag: r,
                txn_ids: t,
            }
        }),
        (
            arb_text(),
            proptest::collection::vec(any::<(u64, u64, u64)>(), 0..4)
        )
            .prop_map(|(t, w)| TwoPc::Phase1 {
                txn_id: t,
                where_list: w
            }),
        (arb_text(), any::<bool>()).prop_map(|(t, c)| TwoPc::Reply {
            txn_id: t,
            commit: c
        }),
        (arb_text(), any::<bool>()).prop_map(|(t, c)| TwoPc::Phase2 {
            txn_id: t,
            commit: c
        }),
        (any::<u64>(), proptest::collection::vec(arb_text(), 0..4)).prop_map(|(r, w)| {
            TwoPc::WorkersLeft {
                rtag: r,
                workers: w,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn frames_round_trip_through_a_stream_split_anywhere(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        split in any::<prop::sample::Index>(),
    ) {
        let codec = ConnectorCodec::default();
        let mut wire = BytesMut::new();
        for f in &frames {
            codec.encode_frame(f, &mut wire).unwrap();
        }
        let cut = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(f) = codec.decode_frame(&mut buf).unwrap() {
            got.push(f);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = codec.decode_frame(&mut buf).unwrap() {
            got.push(f);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn two_pc_round_trips(msg in arb_two_pc()) {
        let Frame::Message(m) = Frame::two_pc(&msg).unwrap() else { unreachable!() };
        prop_assert_eq!(TwoPc::decode(m.payload).unwrap(), msg);
    }

    /// The `fuzz/` target's property (frames, 2PC payloads inside them,
    /// bare 2PC bytes, the external codec), run in CI with a fixed case count.
    #[test]
    fn arbitrary_bytes_never_panic_and_never_overallocate(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = ConnectorCodec::new(128);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = codec.decode_frame(&mut buf) {
            if let Frame::Message(m) = frame {
                let _ = TwoPc::decode(m.payload);
            }
        }
        prop_assert!(buf.capacity() <= 4 + 128 + bytes.len());
        let mut ext = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) =
            tokio_util::codec::Decoder::decode(&mut connector::external::ExternalCodec, &mut ext)
        {}
        let _ = TwoPc::decode(Bytes::from(bytes));
    }
}
