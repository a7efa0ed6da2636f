//! The gRPC codec of every service: prost's, with one check before a `TxnRequest` is decoded.
//!
//! etcd (gogoproto, Go's growable stacks) decodes a txn nested as deep as the 2 MiB message
//! limit allows; prost stops at 100 nested messages (50 txn levels), which made oxcd accept a
//! txn 50 deep at the edge and fail to decode it again when applying it (one more level, inside
//! the Raft entry). oxcd builds prost without that limit and bounds the nesting here instead, on
//! the raw bytes and before anything is decoded: every member's applier then decodes what the
//! edge accepted, and no thread's stack is at the mercy of a client.

use std::any::TypeId;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::etcdserverpb::TxnRequest;

/// The deepest txn (counting the outermost as 1) oxcd accepts: far beyond any client's use
/// (etcd's own clients nest a few levels), and within what the threads' stacks decode, validate,
/// apply and drop.
pub const MAX_TXN_DEPTH: usize = 128;

/// prost's codec with the txn depth check (set as the services' codec by the build script).
#[derive(Debug, Clone)]
pub struct EtcdCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for EtcdCodec<T, U> {
    fn default() -> Self {
        EtcdCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for EtcdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = DepthChecked<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        self.0.encoder()
    }

    fn decoder(&mut self) -> DepthChecked<U> {
        DepthChecked(self.0.decoder())
    }
}

/// prost's decoder, refusing a `TxnRequest` nested deeper than [`MAX_TXN_DEPTH`].
#[derive(Debug)]
pub struct DepthChecked<U>(ProstDecoder<U>);

impl<U: Message + Default + 'static> Decoder for DepthChecked<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // A DecodeBuf is one message in one contiguous buffer (tonic's BytesMut).
        if TypeId::of::<U>() == TypeId::of::<TxnRequest>() && txn_too_deep(bytes::Buf::chunk(buf), 1) {
            return Err(too_deep());
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// What a txn nested deeper than [`MAX_TXN_DEPTH`] gets.
pub fn too_deep() -> Status {
    Status::invalid_argument(format!("etcdserver: txn nested deeper than {MAX_TXN_DEPTH} levels"))
}

/// Whether the encoded `TxnRequest` in `buf`, at nesting `depth`, holds a txn deeper than
/// [`MAX_TXN_DEPTH`]. Reads only the fields that nest (`success`, `failure`, and an op's
/// `request_txn`); anything malformed is left to prost to refuse.
pub fn txn_too_deep(buf: &[u8], depth: usize) -> bool {
    if depth > MAX_TXN_DEPTH {
        return true;
    }
    // TxnRequest.success = 2, .failure = 3 (RequestOp); RequestOp.request_txn = 4 (TxnRequest).
    fields(buf, |field, value| {
        (field == 2 || field == 3) && fields(value, |f, txn| f == 4 && txn_too_deep(txn, depth + 1))
    })
}

/// Calls `f` with each length-delimited field of the message in `buf` until it returns true;
/// whether it did. Stops quietly at anything malformed.
fn fields(mut buf: &[u8], mut f: impl FnMut(u64, &[u8]) -> bool) -> bool {
    while !buf.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut buf) else { return false };
        match key & 7 {
            0 => {
                if prost::encoding::decode_varint(&mut buf).is_err() {
                    return false;
                }
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if buf.len() < n {
                    return false;
                }
                buf = &buf[n..];
            }
            2 => {
                let Ok(len) = prost::encoding::decode_varint(&mut buf) else { return false };
                let Some(value) = usize::try_from(len).ok().and_then(|l| buf.get(..l)) else { return false };
                if f(key >> 3, value) {
                    return true;
                }
                buf = &buf[value.len()..];
            }
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::{PutRequest, RequestOp, request_op};

    fn nested(depth: usize) -> TxnRequest {
        let put = RequestOp { request: Some(request_op::Request::RequestPut(PutRequest::default())) };
        let mut t = TxnRequest { success: vec![put], ..Default::default() };
        for _ in 1..depth {
            let op = RequestOp { request: Some(request_op::Request::RequestTxn(t)) };
            t = TxnRequest { failure: vec![op], ..Default::default() };
        }
        t
    }

    #[test]
    fn depth_is_read_off_the_bytes() {
        for depth in [1, 2, 50, 51, 100, MAX_TXN_DEPTH] {
            let bytes = nested(depth).encode_to_vec();
            assert!(!txn_too_deep(&bytes, 1), "depth {depth}");
            // And prost decodes it back (no recursion limit).
            assert_eq!(TxnRequest::decode(&bytes[..]).unwrap(), nested(depth));
        }
        assert!(txn_too_deep(&nested(MAX_TXN_DEPTH + 1).encode_to_vec(), 1));
        // Malformed input is prost's to refuse.
        assert!(!txn_too_deep(&[0x12, 0x7f, 1], 1));
    }
}
