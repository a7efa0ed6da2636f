//! etcd's peer wire formats (rafthttp, etcd 3.5): the two stream encodings, the pipeline body and
//! the link heartbeat, as docs/etcd-peer-protocol.md (§1.6–§1.8) describes them.
//!
//! raft-rs's `eraftpb` messages and etcd's `raftpb` share their field numbers (§2.1), so a message
//! crosses as raft-rs encodes it; what this module adds is the framing around it:
//!
//! - **message stream** (`/raft/stream/message/<id>`): each message is a big-endian `u64` length and
//!   the message; a reader refuses lengths over 512 MiB, as etcd's does.
//! - **msgappv2 stream** (`/raft/stream/msgapp/<id>`): records of one type byte. `0x00` is the link
//!   heartbeat; `0x01` is an append that continues the last one (the entry count, each entry with
//!   its length, the commit index: term, index and ids are implied by the stream's state); `0x02` is
//!   a whole message with its length. Both ends track the term and index the next `0x01` continues.
//! - **pipeline** (`POST /raft`): the bare message, no length.
//! - **link heartbeat**: a `MsgHeartbeat` from 0 to 0, sent every 1.67 s at most so that etcd's 5 s
//!   read deadline never fires on an idle stream; a reader drops it before Raft sees it.
//!
//! Decoders are incremental: fed the bytes received so far, they answer a message, or `None` until
//! more bytes arrive, and consume only whole records.

use bytes::{Buf, BytesMut};
use protobuf::Message as PbMessage;
use raft::prelude::{Entry, Message, MessageType};

/// The largest message a stream reader accepts (etcd's `readBytesLimit`).
pub const MAX_MESSAGE_BYTES: u64 = 512 << 20;

/// msgappv2 record types.
const LINK_HEARTBEAT: u8 = 0x00;
const APP_ENTRIES: u8 = 0x01;
const FULL_MESSAGE: u8 = 0x02;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// etcd's `ErrExceedSizeLimit`.
    #[error("rafthttp: error limit exceeded ({0} bytes)")]
    TooLarge(u64),
    /// etcd's msgappv2 decoder's words for a record type it does not know.
    #[error("failed to parse type {0} in msgappv2 stream")]
    UnknownRecord(u8),
    #[error("rafthttp: cannot decode message: {0}")]
    Protobuf(String),
}

/// The message etcd sends on an idle stream to keep it open.
pub fn link_heartbeat() -> Message {
    Message { msg_type: MessageType::MsgHeartbeat, ..Default::default() }
}

/// Whether `m` is a link heartbeat (never a Raft heartbeat: those name their sender).
pub fn is_link_heartbeat(m: &Message) -> bool {
    m.msg_type == MessageType::MsgHeartbeat && m.from == 0 && m.to == 0
}

/// The pipeline body and the message part of the stream encodings.
pub fn encode_message(m: &Message) -> Vec<u8> {
    m.write_to_bytes().expect("a message built in memory encodes")
}

/// Decodes a pipeline body (or one framed message's bytes).
pub fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    Message::parse_from_bytes(body).map_err(|e| WireError::Protobuf(e.to_string()))
}

/// Appends `m` to `out` as the message stream frames it (and msgappv2 each entry of an append):
/// a big-endian `u64` length, then `m` encoded straight into `out`, with no copy of the body.
pub fn encode_framed(m: &impl PbMessage, out: &mut Vec<u8>) {
    out.extend_from_slice(&u64::from(m.compute_size()).to_be_bytes());
    m.write_to_vec(out).expect("a message built in memory encodes");
}

/// The reader's side of a message stream.
#[derive(Debug, Default)]
pub struct MessageStreamDecoder;

impl MessageStreamDecoder {
    /// The next message in `buf` (consumed), or `None` until the whole of it has arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        take_framed(buf, 0)
    }
}

/// The writer's side of a msgappv2 stream.
#[derive(Debug, Default)]
pub struct MsgAppV2Encoder {
    term: u64,
    index: u64,
}

impl MsgAppV2Encoder {
    /// Appends `m` to `out`: the link heartbeat as one byte, an append that continues the last
    /// one at the same term as its entries only, anything else whole.
    pub fn encode(&mut self, m: &Message, out: &mut Vec<u8>) {
        if is_link_heartbeat(m) {
            out.push(LINK_HEARTBEAT);
            return;
        }
        if m.msg_type == MessageType::MsgAppend
            && self.index == m.index
            && self.term == m.log_term
            && m.log_term == m.term
        {
            out.push(APP_ENTRIES);
            out.extend_from_slice(&(m.entries.len() as u64).to_be_bytes());
            for e in m.get_entries() {
                encode_framed(e, out);
            }
            out.extend_from_slice(&m.commit.to_be_bytes());
            self.index += m.entries.len() as u64;
            return;
        }
        out.push(FULL_MESSAGE);
        encode_framed(m, out);
        self.term = m.term;
        self.index = m.get_entries().last().map_or(m.index, |e| e.index);
    }
}

/// The reader's side of a msgappv2 stream from `remote` to `local` (the ids a `0x01` record
/// leaves out).
#[derive(Debug)]
pub struct MsgAppV2Decoder {
    local: u64,
    remote: u64,
    term: u64,
    index: u64,
}

impl MsgAppV2Decoder {
    pub fn new(local: u64, remote: u64) -> MsgAppV2Decoder {
        MsgAppV2Decoder { local, remote, term: 0, index: 0 }
    }

    /// The next record in `buf` as a message (consumed; the link heartbeat as [`link_heartbeat`]),
    /// or `None` until the whole record has arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(&kind) = buf.first() else { return Ok(None) };
        match kind {
            LINK_HEARTBEAT => {
                buf.advance(1);
                Ok(Some(link_heartbeat()))
            }
            APP_ENTRIES => {
                let Some(n) = peek_u64(buf, 1) else { return Ok(None) };
                // Walk the entries' lengths before taking anything: the record may be incomplete.
                let mut at = 9usize;
                let mut spans = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    let Some(len) = peek_u64(buf, at) else { return Ok(None) };
                    let end = body_end(at + 8, len)?;
                    spans.push((at + 8, end));
                    at = end;
                }
                let Some(commit) = peek_u64(buf, at) else { return Ok(None) };
                let mut entries = Vec::with_capacity(spans.len());
                for (start, end) in spans {
                    entries.push(
                        Entry::parse_from_bytes(&buf[start..end]).map_err(|e| WireError::Protobuf(e.to_string()))?,
                    );
                }
                buf.advance(at + 8);
                let m = Message {
                    msg_type: MessageType::MsgAppend,
                    from: self.remote,
                    to: self.local,
                    term: self.term,
                    log_term: self.term,
                    index: self.index,
                    commit,
                    entries: entries.into(),
                    ..Default::default()
                };
                self.index += m.entries.len() as u64;
                Ok(Some(m))
            }
            FULL_MESSAGE => {
                let Some(m) = take_framed(buf, 1)? else { return Ok(None) };
                self.term = m.term;
                self.index = m.get_entries().last().map_or(m.index, |e| e.index);
                Ok(Some(m))
            }
            other => Err(WireError::UnknownRecord(other)),
        }
    }
}

/// The message framed by the length at `at` in `buf`, consumed with everything before it, once
/// the whole of it has arrived.
fn take_framed(buf: &mut BytesMut, at: usize) -> Result<Option<Message>, WireError> {
    let Some(len) = peek_u64(buf, at) else { return Ok(None) };
    let total = body_end(at + 8, len)?;
    if buf.len() < total {
        return Ok(None);
    }
    let m = decode_message(&buf[at + 8..total])?;
    buf.advance(total);
    Ok(Some(m))
}

/// The big-endian `u64` at `at` in `buf`, if it has arrived.
fn peek_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at + 8)?;
    Some(u64::from_be_bytes(b.try_into().expect("eight bytes")))
}

/// Where a body of `len` bytes starting at `start` ends, refusing what etcd refuses.
fn body_end(start: usize, len: u64) -> Result<usize, WireError> {
    if len > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(len));
    }
    Ok(start + len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
        Entry { term, index, data: data.to_vec().into(), ..Default::default() }
    }

    fn append(from: u64, to: u64, term: u64, index: u64, entries: Vec<Entry>, commit: u64) -> Message {
        Message {
            msg_type: MessageType::MsgAppend,
            from,
            to,
            term,
            log_term: term,
            index,
            commit,
            entries: entries.into(),
            ..Default::default()
        }
    }

    /// Feeds `bytes` one at a time and collects every message decoded.
    fn trickle<F>(bytes: &[u8], mut decode: F) -> Vec<Message>
    where
        F: FnMut(&mut BytesMut) -> Result<Option<Message>, WireError>,
    {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = decode(&mut buf).expect("decodes") {
                out.push(m);
            }
        }
        assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
        out
    }

    #[test]
    fn etcds_link_heartbeat_is_recognised() {
        // The 38 bytes etcd 3.5 writes on a message stream (gogoproto writes every scalar).
        let wire: [u8; 38] = [
            0, 0, 0, 0, 0, 0, 0, 0x1e, 0x08, 0x08, 0x10, 0, 0x18, 0, 0x20, 0, 0x28, 0, 0x30, 0, 0x40, 0, 0x4a, 0x0a,
            0x12, 0x08, 0x0a, 0x02, 0x28, 0x00, 0x10, 0x00, 0x18, 0x00, 0x50, 0, 0x58, 0,
        ];
        let got = trickle(&wire, |b| MessageStreamDecoder.decode(b));
        assert_eq!(got.len(), 1);
        assert!(is_link_heartbeat(&got[0]));
        let mut raft_heartbeat = link_heartbeat();
        raft_heartbeat.from = 2;
        raft_heartbeat.to = 1;
        assert!(!is_link_heartbeat(&raft_heartbeat));
    }

    #[test]
    fn message_stream_round_trips_byte_by_byte() {
        let vote = Message { msg_type: MessageType::MsgRequestVote, from: 7, to: 9, term: 4, ..Default::default() };
        let msgs = [append(7, 9, 3, 10, vec![entry(3, 11, b"a"), entry(3, 12, b"")], 11), vote, link_heartbeat()];
        let mut wire = Vec::new();
        for m in &msgs {
            encode_framed(m, &mut wire);
        }
        assert_eq!(trickle(&wire, |b| MessageStreamDecoder.decode(b)), msgs);
    }

    #[test]
    fn message_stream_refuses_a_length_over_512_mib() {
        let mut buf = BytesMut::from(&((512u64 << 20) + 1).to_be_bytes()[..]);
        assert_eq!(MessageStreamDecoder.decode(&mut buf), Err(WireError::TooLarge((512 << 20) + 1)));
    }

    #[test]
    fn msgappv2_continues_appends_from_the_streams_state() {
        let (leader, follower) = (0xa1, 0xb2);
        let first = append(leader, follower, 5, 20, vec![entry(5, 21, b"x")], 20);
        let second = append(leader, follower, 5, 21, vec![entry(5, 22, b"y"), entry(5, 23, b"z")], 21);
        let third = append(leader, follower, 5, 23, vec![], 23);
        // A new term breaks the run: sent whole.
        let fourth = append(leader, follower, 6, 23, vec![entry(6, 24, b"w")], 23);
        let mut enc = MsgAppV2Encoder::default();
        let mut wire = Vec::new();
        let mut kinds = Vec::new();
        for m in [&first, &second, &third, &link_heartbeat(), &fourth] {
            let at = wire.len();
            enc.encode(m, &mut wire);
            kinds.push(wire[at]);
        }
        assert_eq!(kinds, [FULL_MESSAGE, APP_ENTRIES, APP_ENTRIES, LINK_HEARTBEAT, FULL_MESSAGE]);
        // The heartbeat is one byte; the continued append of no entries is type, count and commit.
        let mut dec = MsgAppV2Decoder::new(follower, leader);
        let got = trickle(&wire, |b| dec.decode(b));
        assert_eq!(got, vec![first, second, third, link_heartbeat(), fourth]);
    }

    #[test]
    fn msgappv2_refuses_an_unknown_record() {
        let mut dec = MsgAppV2Decoder::new(1, 2);
        let mut buf = BytesMut::from(&[0x03u8][..]);
        let err = dec.decode(&mut buf).unwrap_err();
        assert_eq!(err.to_string(), "failed to parse type 3 in msgappv2 stream");
    }
}
