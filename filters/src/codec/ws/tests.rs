//! Codec tests against tungstenite as the reference encoder.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode as TOp};
use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader};

const LENGTHS: &[usize] = &[0, 1, 125, 126, 127, 1000, 65535, 65536, 200_000];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// tungstenite's encoding of one frame.
fn reference(fin: bool, op: TOp, data: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader { is_final: fin, opcode: op, mask, ..FrameHeader::default() };
    let f = TFrame::from_payload(header, data.to_vec().into());
    let mut out = Vec::new();
    f.format(&mut out).unwrap();
    out
}

fn parse_all(parser: &mut FrameParser, wire: &[u8], chunks: &[usize]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks[i % chunks.len()].max(1).min(wire.len() - at);
        parser.push(&wire[at..at + n]);
        at += n;
        i += 1;
        while let Some(f) = parser.next_frame().unwrap() {
            frames.push(f);
        }
    }
    frames
}

#[test]
fn encoder_is_byte_identical_to_tungstenite() {
    for &len in LENGTHS {
        let data = payload(len);
        for mask in [None, Some(MASK)] {
            let ours = encode_frame(true, OpCode::Text, &data, mask);
            assert_eq!(&ours[..], &reference(true, TOp::Data(Data::Text), &data, mask)[..], "len {len} mask {mask:?}");
        }
    }
}

#[test]
fn parses_reference_frames_byte_by_byte_at_every_edge_length() {
    for &len in LENGTHS {
        let data = payload(len);
        for (sender, mask) in [(Sender::Client, Some(MASK)), (Sender::Server, None)] {
            let wire = reference(true, TOp::Data(Data::Binary), &data, mask);
            let mut p = FrameParser::new(sender, 1 << 20);
            let frames = parse_all(&mut p, &wire, &[1]);
            assert_eq!(frames.len(), 1, "len {len}");
            assert_eq!(&frames[0].payload[..], &data[..]);
            assert_eq!(&frames[0].raw[..], &wire[..], "raw bytes are the exact wire bytes");
            assert_eq!(frames[0].mask, mask);
            assert_eq!(p.buffered(), 0);
        }
    }
}

#[test]
fn fragmented_message_with_ping_in_between() {
    let mut wire = reference(false, TOp::Data(Data::Text), b"{\"a\":", Some(MASK));
    wire.extend(reference(true, TOp::Control(Control::Ping), b"hi", Some(MASK)));
    wire.extend(reference(false, TOp::Data(Data::Continue), b"[1,2", Some(MASK)));
    wire.extend(reference(true, TOp::Data(Data::Continue), b"]}", Some(MASK)));
    for chunk in [1, 3, 7, 1000] {
        let mut p = FrameParser::new(Sender::Client, 1 << 20);
        let mut asm = Assembler::new(1 << 20, 64);
        let mut items = Vec::new();
        for f in parse_all(&mut p, &wire, &[chunk]) {
            if let Some(item) = asm.push(f).unwrap() {
                items.push(item);
            }
        }
        assert_eq!(items.len(), 2);
        match &items[0] {
            Item::Control(f) => assert_eq!((f.opcode, &f.payload[..]), (OpCode::Ping, &b"hi"[..])),
            other => panic!("expected the ping first, got {other:?}"),
        }
        match &items[1] {
            Item::Message(m) => {
                assert_eq!(m.opcode, OpCode::Text);
                assert_eq!(&m.payload[..], b"{\"a\":[1,2]}");
                assert_eq!(m.wire, Wire::Fragments(3), "the fragments are not kept");
            }
            other => panic!("expected the message, got {other:?}"),
        }
    }
}

fn first_error(sender: Sender, max: usize, wire: &[u8]) -> WsError {
    let mut p = FrameParser::new(sender, max);
    let mut asm = Assembler::new(max, 1 << 20);
    p.push(wire);
    loop {
        match p.next_frame() {
            Ok(Some(f)) => {
                if let Err(e) = asm.push(f) {
                    return e;
                }
            }
            Ok(None) => panic!("no error in {wire:?}"),
            Err(e) => return e,
        }
    }
}

#[test]
fn every_protocol_error_is_detected_with_its_close_code() {
    let s = Sender::Server;
    let cases: Vec<(Sender, usize, Vec<u8>, WsError, u16)> = vec![
        (s, 100, vec![0x81 | 0x40, 0x00], WsError::ReservedBits, 1002),
        (s, 100, vec![0x83, 0x00], WsError::ReservedOpcode(3), 1002),
        (s, 100, vec![0x8B, 0x00], WsError::ReservedOpcode(0xB), 1002),
        (Sender::Client, 100, vec![0x81, 0x00], WsError::UnmaskedClientFrame, 1002),
        (s, 100, vec![0x81, 0x80, 1, 2, 3, 4], WsError::MaskedServerFrame, 1002),
        (s, 1 << 20, vec![0x82, 126, 0x00, 0x05], WsError::NonMinimalLength, 1002),
        (s, 1 << 20, vec![0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff], WsError::NonMinimalLength, 1002),
        (s, 1 << 20, vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], WsError::LengthMsbSet, 1002),
        (s, 1 << 20, vec![0x89, 126, 0x00, 0x7e], WsError::ControlTooLong(126), 1002),
        (s, 100, vec![0x09, 0x00], WsError::FragmentedControl, 1002),
        (s, 100, vec![0x80, 0x00], WsError::UnexpectedContinuation, 1002),
        (s, 100, vec![0x01, 0x01, b'a', 0x81, 0x00], WsError::ExpectedContinuation, 1002),
        (s, 10, vec![0x81, 11], WsError::TooBig { size: 11, limit: 10 }, 1009),
        (s, 10, vec![0x01, 6, b'a', b'a', b'a', b'a', b'a', b'a', 0x80, 6, b'b', b'b', b'b', b'b', b'b', b'b'], WsError::TooBig { size: 12, limit: 10 }, 1009),
        (s, 100, vec![0x81, 0x02, 0xc3, 0x28], WsError::InvalidUtf8, 1007),
    ];
    for (sender, max, wire, expected, code) in cases {
        let err = first_error(sender, max, &wire);
        assert_eq!(err, expected, "wire {wire:?}");
        assert_eq!(err.close_code(), code);
    }
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    let mut p = FrameParser::new(Sender::Server, 65536);
    p.push(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert!(matches!(p.next_frame(), Err(WsError::TooBig { .. })));
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes();
    let mut wire = reference(false, TOp::Data(Data::Text), &euro[..1], None);
    wire.extend(reference(true, TOp::Data(Data::Continue), &euro[1..], None));
    let mut p = FrameParser::new(Sender::Server, 100);
    let mut asm = Assembler::new(100, 64);
    let mut got = None;
    for f in parse_all(&mut p, &wire, &[1]) {
        if let Some(Item::Message(m)) = asm.push(f).unwrap() {
            got = Some(m.payload);
        }
    }
    assert_eq!(got, Some(Bytes::from_static(euro)));
}

#[test]
fn close_payloads() {
    assert_eq!(parse_close_payload(&[]).unwrap(), None);
    assert_eq!(parse_close_payload(&close_payload(1008, "no")).unwrap(), Some((1008, "no")));
    assert!(parse_close_payload(&[3]).is_err());
    assert!(parse_close_payload(&1005u16.to_be_bytes()).is_err());
    assert!(parse_close_payload(&999u16.to_be_bytes()).is_err());
    assert!(parse_close_payload(&[0x03, 0xe8, 0xff]).is_err());
    let long = "é".repeat(100);
    let p = close_payload(1008, &long);
    assert!(p.len() <= 125);
    assert!(std::str::from_utf8(&p[2..]).is_ok());
}

proptest! {
    // Large frames: fewer cases keep the debug-build suite quick.
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_chunking_yields_the_same_frames(
        msgs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..70_000), any::<bool>(), any::<[u8; 4]>()), 1..5),
        chunks in proptest::collection::vec(1usize..9000, 1..20),
    ) {
        let mut wire = Vec::new();
        for (data, text, mask) in &msgs {
            let op = if *text { TOp::Data(Data::Binary) } else { TOp::Control(Control::Ping) };
            let data = if *text { &data[..] } else { &data[..data.len().min(125)] };
            wire.extend(reference(true, op, data, Some(*mask)));
        }
        let mut p = FrameParser::new(Sender::Client, 1 << 20);
        let frames = parse_all(&mut p, &wire, &chunks);
        prop_assert_eq!(frames.len(), msgs.len());
        for (f, (data, text, _)) in frames.iter().zip(&msgs) {
            let expect = if *text { &data[..] } else { &data[..data.len().min(125)] };
            prop_assert_eq!(&f.payload[..], expect);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400), sender in any::<bool>()) {
        let sender = if sender { Sender::Client } else { Sender::Server };
        let mut p = FrameParser::new(sender, 300);
        let mut asm = Assembler::new(300, 1 << 20);
        p.push(&data);
        while let Ok(Some(f)) = p.next_frame() {
            if asm.push(f).is_err() { break; }
        }
    }
}

#[test]
fn issue13_a_message_in_progress_holds_its_payload_once_and_never_past_the_cap() {
    let cap = 10_000;
    let mut asm = Assembler::new(cap, u32::MAX);
    let mut len = 0;
    for i in 0..cap {
        let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
        let wire = encode_frame(false, op, b"x", Some(MASK));
        let mut p = FrameParser::new(Sender::Client, cap);
        p.push(&wire);
        assert!(asm.push(p.next_frame().unwrap().unwrap()).unwrap().is_none());
        len += 1;
        assert!(asm.held() <= (2 * len).max(16) && asm.held() <= cap, "{} bytes held for {len} payload bytes", asm.held());
    }
    let over = encode_frame(false, OpCode::Continuation, b"x", Some(MASK));
    let mut p = FrameParser::new(Sender::Client, cap);
    p.push(&over);
    assert!(matches!(asm.push(p.next_frame().unwrap().unwrap()), Err(WsError::TooBig { .. })));
    assert_eq!(asm.held(), 0, "a refused message is released");
}

#[test]
fn issue13_the_fragment_cap_counts_every_fragment() {
    let mut asm = Assembler::new(1 << 20, 3);
    let mut p = FrameParser::new(Sender::Server, 1 << 20);
    for (fin, op) in [(false, OpCode::Text), (false, OpCode::Continuation), (false, OpCode::Continuation), (true, OpCode::Continuation)] {
        p.push(&encode_frame(fin, op, b"ab", None));
    }
    let mut results = Vec::new();
    while let Some(f) = p.next_frame().unwrap() {
        results.push(asm.push(f).map(|i| i.is_some()));
    }
    assert_eq!(results, vec![Ok(false), Ok(false), Ok(false), Err(WsError::TooManyFragments { limit: 3 })]);
    assert_eq!(WsError::TooManyFragments { limit: 3 }.close_code(), 1008);
}

#[test]
fn issue13_the_read_buffer_is_released_once_parsed() {
    let mut p = FrameParser::new(Sender::Server, 1 << 20);
    p.push(&encode_frame(true, OpCode::Binary, &vec![7u8; 60_000], None));
    let frame = p.next_frame().unwrap().unwrap();
    assert!(p.next_frame().unwrap().is_none());
    assert!(p.held() <= 4096, "{} bytes held after everything was parsed", p.held());
    assert_eq!(frame.payload.len(), 60_000, "the frame keeps its own bytes");
}

proptest! {
    /// Any fragmentation, with pings between fragments, reassembles to the same payload; the
    /// message forwarded toward the server is one masked frame of that payload.
    #[test]
    fn issue13_any_fragmentation_reassembles_and_forwards_as_one_frame(
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
        pings in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let mut wire = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { TOp::Data(Data::Binary) } else { TOp::Data(Data::Continue) };
            wire.extend(reference(i + 1 == parts.len(), op, part, Some(MASK)));
            if pings[i] && i + 1 < parts.len() {
                wire.extend(reference(true, TOp::Control(Control::Ping), b"p", Some(MASK)));
            }
        }
        let mut p = FrameParser::new(Sender::Client, 1 << 20);
        let mut asm = Assembler::new(1 << 20, 64);
        let mut message = None;
        for f in parse_all(&mut p, &wire, &[5]) {
            if let Some(Item::Message(m)) = asm.push(f).unwrap() {
                message = Some(m);
            }
        }
        let m = message.expect("the message completes");
        let whole: Vec<u8> = parts.concat();
        prop_assert_eq!(&m.payload[..], &whole[..]);
        let expected_wire = if parts.len() == 1 { Wire::Frame(m.payload.clone()) } else { Wire::Fragments(parts.len() as u32) };
        if parts.len() > 1 {
            prop_assert_eq!(&m.wire, &expected_wire);
        }
        let out: Vec<u8> = m.into_frames(Some([1, 2, 3, 4])).concat();
        let mut back = FrameParser::new(Sender::Client, 1 << 20);
        back.push(&out);
        let f = back.next_frame().unwrap().expect("one whole frame");
        prop_assert!(f.fin);
        prop_assert_eq!(&f.payload[..], &whole[..]);
        prop_assert_eq!(back.buffered(), 0);
    }
}
