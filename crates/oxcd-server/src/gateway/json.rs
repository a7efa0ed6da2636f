//! Proto3 JSON ⇄ messages, through the descriptors of etcd's protos (compiled into `oxcd-api`).
//!
//! Output follows grpc-gateway v1 with `OrigName` (what etcd 3.4/3.5 send): proto field names
//! (`create_revision`, and the odd ones as declared: `ID`, `TTL`, `peerURLs`), 64-bit integers as
//! strings, bytes as standard base64, enums by name, fields at their default value left out. Input
//! takes proto or lowerCamelCase names, integers as numbers or strings, enums by name or number, and
//! ignores unknown fields, as etcd's gateway does.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

/// One RPC's request and reply types.
pub(super) struct Method {
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

/// The descriptors of every service the gateway serves.
pub(super) struct Descriptors {
    pool: DescriptorPool,
}

static DESCRIPTORS: LazyLock<Descriptors> = LazyLock::new(|| Descriptors {
    pool: DescriptorPool::decode(oxcd_api::FILE_DESCRIPTOR_SET).expect("the compiled protos decode"),
});

impl Descriptors {
    pub fn get() -> &'static Descriptors {
        &DESCRIPTORS
    }

    /// `service`'s `method` (both as in the protos; the gateway's table names only real ones).
    pub fn method(&self, service: &str, method: &str) -> Method {
        let svc = self.pool.get_service_by_name(service).expect("service in the protos");
        let m = svc.methods().find(|m| m.name() == method).expect("method in the service");
        Method { input: m.input(), output: m.output() }
    }
}

/// A request body that is not valid JSON for its message.
#[derive(Debug)]
pub(super) struct JsonError(String);

impl JsonError {
    pub fn message(&self) -> &str {
        &self.0
    }

    /// The status a malformed request gets (InvalidArgument, as etcd's gateway answers).
    pub fn status(&self) -> tonic::Status {
        tonic::Status::invalid_argument(self.message())
    }
}

/// A gRPC message frame: no compression, the length, the message.
fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

const SERIALIZE: SerializeOptions =
    SerializeOptions::new().use_proto_field_name(true).skip_default_fields(true).stringify_64_bit_integers(true);

/// Decodes a unary request body; an empty body is the empty request (grpc-gateway reads it so).
pub(super) fn decode_request<M: prost::Message + Default>(
    desc: &MessageDescriptor,
    body: &[u8],
) -> Result<M, JsonError> {
    // The first value only: what follows it is ignored, as Go's json.Decoder does.
    let value = match serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>().next() {
        None => return Ok(M::default()),
        Some(Ok(v)) => v,
        // Go's words for a body that ends too soon (clients may match on them).
        Some(Err(e)) if e.is_eof() => return Err(JsonError("unexpected EOF".into())),
        Some(Err(e)) => return Err(JsonError(e.to_string())),
    };
    from_json(desc, &value)?.transcode_to::<M>().map_err(|e| JsonError(e.to_string()))
}

/// A JSON value as a message of `desc`. Unknown fields are ignored (etcd's gateway ignores them);
/// an unknown enum name is an error, as there.
fn from_json(desc: &MessageDescriptor, value: &serde_json::Value) -> Result<DynamicMessage, JsonError> {
    const STRICT: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);
    const LENIENT: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);
    match DynamicMessage::deserialize_with_options(desc.clone(), value, &STRICT) {
        Ok(m) => Ok(m),
        Err(e) if e.to_string().contains("unrecognized field name") => {
            DynamicMessage::deserialize_with_options(desc.clone(), value, &LENIENT)
                .map_err(|e| JsonError(e.to_string()))
        }
        Err(e) => Err(JsonError(e.to_string())),
    }
}

/// A reply as JSON.
pub(super) fn encode<M: prost::Message>(desc: &MessageDescriptor, msg: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.encoded_len() * 2 + 16);
    write(desc, msg, &mut out);
    out
}

/// One streamed reply: `{"result":<reply>}` and a newline.
pub(super) fn stream_result<M: prost::Message>(desc: &MessageDescriptor, msg: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.encoded_len() * 2 + 32);
    out.extend_from_slice(b"{\"result\":");
    write(desc, msg, &mut out);
    out.extend_from_slice(b"}\n");
    out
}

fn write<M: prost::Message>(desc: &MessageDescriptor, msg: &M, out: &mut Vec<u8>) {
    let mut dynamic = DynamicMessage::new(desc.clone());
    dynamic.transcode_from(msg).expect("a reply decodes as its own type");
    let mut ser = serde_json::Serializer::new(out);
    dynamic.serialize_with_options(&mut ser, &SERIALIZE).expect("JSON serialization into memory cannot fail");
}

/// The JSON requests of a streamed body (values one after another, any whitespace between),
/// each as a gRPC frame, as the body's chunks arrive. A malformed value ends the stream with
/// its error; so does a body that ends inside a value.
pub(super) fn request_frames<E>(
    desc: MessageDescriptor,
    chunks: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, JsonError>> + Send + 'static
where
    E: std::fmt::Display,
{
    struct St<S> {
        chunks: S,
        buf: BytesMut,
        ready: std::collections::VecDeque<Result<Bytes, JsonError>>,
        done: bool,
    }
    let st = St { chunks: Box::pin(chunks), buf: BytesMut::new(), ready: Default::default(), done: false };
    futures::stream::unfold(st, move |mut st| {
        let desc = desc.clone();
        async move {
            loop {
                if let Some(r) = st.ready.pop_front() {
                    if r.is_err() {
                        st.done = true;
                        st.ready.clear();
                    }
                    return Some((r, st));
                }
                if st.done {
                    return None;
                }
                match st.chunks.next().await {
                    Some(Ok(chunk)) => {
                        st.buf.extend_from_slice(&chunk);
                        let used = parse_values(&desc, &st.buf, &mut st.ready);
                        let _ = st.buf.split_to(used);
                    }
                    Some(Err(e)) => {
                        st.ready.push_back(Err(JsonError(e.to_string())));
                    }
                    None => {
                        st.done = true;
                        if !st.buf.iter().all(u8::is_ascii_whitespace) {
                            st.ready.push_back(Err(JsonError("unexpected EOF".into())));
                        }
                    }
                }
            }
        }
    })
}

/// Parses the complete JSON values at the start of `buf` into frames; returns the bytes used.
fn parse_values(
    desc: &MessageDescriptor,
    buf: &[u8],
    out: &mut std::collections::VecDeque<Result<Bytes, JsonError>>,
) -> usize {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut used = 0;
    loop {
        match values.next() {
            None => return buf.len(),
            Some(Ok(v)) => {
                used = values.byte_offset();
                let frame = from_json(desc, &v).map(|m| grpc_frame(&m.encode_to_vec()));
                let failed = frame.is_err();
                out.push_back(frame);
                if failed {
                    return buf.len();
                }
            }
            // The value is not complete yet: wait for more of the body.
            Some(Err(e)) if e.is_eof() => return used,
            Some(Err(e)) => {
                out.push_back(Err(JsonError(e.to_string())));
                return buf.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader, range_request};
    use oxcd_api::mvccpb::KeyValue;

    use super::*;

    fn range() -> Method {
        Descriptors::get().method("etcdserverpb.KV", "Range")
    }

    #[test]
    fn requests_take_proto_and_camel_names_numbers_as_strings_and_enum_numbers() {
        let m = range();
        let r: RangeRequest = decode_request(
            &m.input,
            br#"{"key":"Zm9v","rangeEnd":"AA==","revision":"7","limit":3,"sort_order":"DESCEND","sortTarget":2,"bogus":1}"#,
        )
        .unwrap();
        assert_eq!(&r.key[..], b"foo");
        assert_eq!(&r.range_end[..], b"\0");
        assert_eq!((r.revision, r.limit), (7, 3));
        assert_eq!(r.sort_order, range_request::SortOrder::Descend as i32);
        assert_eq!(r.sort_target, range_request::SortTarget::Create as i32);
        let empty: RangeRequest = decode_request(&m.input, b" \n").unwrap();
        assert_eq!(empty, RangeRequest::default());
        let eof = decode_request::<RangeRequest>(&m.input, br#"{"key":"Zm9v""#).unwrap_err();
        assert_eq!(eof.message(), "unexpected EOF");
        // Unknown fields are ignored, unknown enum names are not (even beside an unknown field).
        assert!(decode_request::<RangeRequest>(&m.input, br#"{"key":"Zm9v","sort_order":"SIDEWAYS"}"#).is_err());
        let r: RangeRequest = decode_request(&m.input, br#"{"key":"Zm9v"} trailing"#).unwrap();
        assert_eq!(&r.key[..], b"foo", "what follows the first value is ignored");
    }

    #[test]
    fn replies_use_proto_names_string_integers_base64_and_omit_defaults() {
        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 0 }),
            kvs: vec![KeyValue {
                key: Bytes::from_static(b"foo"),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: Bytes::from_static(b"bar"),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = String::from_utf8(encode(&range().output, &resp)).unwrap();
        assert_eq!(
            json,
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    #[test]
    fn streamed_requests_are_framed_as_they_complete() {
        let m = Descriptors::get().method("etcdserverpb.Watch", "Watch");
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = vec![
            Ok(Bytes::from_static(br#"{"create_request":{"key":"Zm9v"}}{"create_re"#)),
            Ok(Bytes::from_static(br#"quest":{"key":"YmFy"}}"#)),
            Ok(Bytes::from_static(b"\n{\"cancel")),
        ];
        let frames: Vec<_> =
            futures::executor::block_on(request_frames(m.input, futures::stream::iter(chunks)).collect());
        assert_eq!(frames.len(), 3);
        assert!(frames[0].is_ok() && frames[1].is_ok());
        assert_eq!(frames[2].as_ref().unwrap_err().message(), "unexpected EOF");
    }
}
