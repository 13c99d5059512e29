//! ByteStream `Read` answered beneath tonic's codec: each piece of a blob goes to the HTTP/2
//! connection as the very buffer it was read into, behind a few bytes of gRPC and protobuf
//! framing written here. Through tonic's codec every byte served would first be copied into
//! its encode buffer: for large reads that copy (and the fresh buffer it needs per message) was
//! the largest cost in user space. Every other ByteStream method goes to the generated service.
//!
//! Wire format: a gRPC message is a flag byte (0: not compressed), its length as a big-endian
//! u32, then the protobuf bytes. `ReadResponse` has one field, `bytes data = 10`, so a piece is
//! the key byte of field 10, the piece's length as a varint, and the piece; an empty piece is
//! an empty message. The unit tests check this framing against prost's own encoding, and every
//! Read in the integration tests decodes it with tonic's client.
//!
//! Requests are decoded as tonic decodes them: one uncompressed message, a size limit
//! (RESOURCE_EXHAUSTED above it), INTERNAL for a frame or protobuf that does not decode,
//! UNIMPLEMENTED for a compressed request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bazel_remote_apis::google::bytestream as bs;
use bs::byte_stream_server::ByteStreamServer;
use bytes::{Buf, Bytes};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use prost::Message;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;
use tower_service::Service;

use super::bytestream::{ByteStreamService, ReadPieces, READ_CHUNK};

/// The HTTP/2 path of ByteStream's Read method.
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";
/// Largest ReadRequest accepted: a resource name is well under a kilobyte.
const MAX_REQUEST_BYTES: usize = 64 << 10;
/// Bytes before a gRPC message: the compression flag and the big-endian u32 length.
const GRPC_PREFIX: usize = 5;
/// `ReadResponse.data`'s field number.
const DATA_FIELD: u32 = 10;

/// The ByteStream service as `kiln serve` mounts it: Read here, the rest generated.
#[derive(Clone)]
pub struct ByteStreamRoutes {
    service: Arc<ByteStreamService>,
    generated: ByteStreamServer<ByteStreamService>,
}

impl ByteStreamRoutes {
    /// Routes over `service`; requests to the generated methods may be up to
    /// `max_decoding_message_size` bytes.
    pub fn new(service: ByteStreamService, max_decoding_message_size: usize) -> Self {
        let service = Arc::new(service);
        let generated = ByteStreamServer::from_arc(service.clone())
            .max_decoding_message_size(max_decoding_message_size);
        ByteStreamRoutes { service, generated }
    }
}

impl NamedService for ByteStreamRoutes {
    const NAME: &'static str = <ByteStreamServer<ByteStreamService> as NamedService>::NAME;
}

type RouteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl Service<http::Request<Body>> for ByteStreamRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> RouteFuture {
        if request.uri().path() == READ_PATH {
            let service = self.service.clone();
            Box::pin(async move { Ok(read(&service, request).await) })
        } else {
            self.generated.call(request)
        }
    }
}

/// Answers one Read: a trailers-only error, or the pieces and then `grpc-status: 0`.
async fn read(service: &ByteStreamService, request: http::Request<Body>) -> http::Response<Body> {
    let pieces = async {
        let (parts, body) = request.into_parts();
        let read_request = decode_request(&parts.headers, body).await?;
        let metadata = MetadataMap::from_headers(parts.headers);
        service.open_read(&metadata, read_request).await
    };
    match pieces.await {
        Ok(pieces) => {
            let mut response = http::Response::new(Body::new(ReadBody::new(pieces)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The one ReadRequest in a request body.
async fn decode_request(headers: &http::HeaderMap, body: Body) -> Result<bs::ReadRequest, Status> {
    if let Some(encoding) = headers.get("grpc-encoding") {
        if encoding.as_bytes() != b"identity" {
            return Err(Status::unimplemented(format!(
                "Request compressed with `{}`, which this server does not accept",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
        }
    }
    let body = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => Status::resource_exhausted(format!(
                "ReadRequest larger than {MAX_REQUEST_BYTES} bytes"
            )),
            Err(e) => match e.downcast::<Status>() {
                Ok(status) => *status,
                Err(e) => Status::internal(format!("Cannot read the request: {e}")),
            },
        })?
        .to_bytes();
    let message = one_message(body)?;
    bs::ReadRequest::decode(message)
        .map_err(|e| Status::internal(format!("Cannot decode the ReadRequest: {e}")))
}

/// The payload of the single uncompressed gRPC message that makes up `body`.
fn one_message(mut body: Bytes) -> Result<Bytes, Status> {
    if body.is_empty() {
        return Err(Status::internal("Missing request message."));
    }
    if body.len() < GRPC_PREFIX {
        return Err(Status::internal("Truncated gRPC message header"));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "Compressed request message, which this server does not accept",
        ));
    }
    if len != body.len() {
        return Err(Status::internal(format!(
            "The request holds {} bytes after a gRPC header announcing {len}; expected exactly one message",
            body.len()
        )));
    }
    Ok(body)
}

/// The bytes that go before `piece_len` bytes of data to make them a whole gRPC message
/// holding one `ReadResponse`.
fn frame_head(piece_len: usize) -> Bytes {
    debug_assert!(
        piece_len <= READ_CHUNK,
        "Read pieces are at most READ_CHUNK bytes"
    );
    let mut field_head = Vec::with_capacity(11);
    if piece_len > 0 {
        prost::encoding::encode_key(
            DATA_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut field_head,
        );
        prost::encoding::encode_varint(piece_len as u64, &mut field_head);
    }
    let message_len = (field_head.len() + piece_len) as u32;
    let mut head = Vec::with_capacity(GRPC_PREFIX + field_head.len());
    head.push(0);
    head.extend_from_slice(&message_len.to_be_bytes());
    head.extend_from_slice(&field_head);
    Bytes::from(head)
}

/// A Read's response body: for each piece its framing, then the piece itself, then trailers
/// with the outcome (`grpc-status: 0`, or the error that ended the pieces).
struct ReadBody {
    pieces: ReadPieces,
    /// A piece whose framing has gone out.
    next_piece: Option<Bytes>,
    ended: bool,
}

impl ReadBody {
    fn new(pieces: ReadPieces) -> Self {
        ReadBody {
            pieces,
            next_piece: None,
            ended: false,
        }
    }
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(piece) = this.next_piece.take() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let outcome = match ready!(this.pieces.as_mut().poll_next(cx)) {
            Some(Ok(piece)) => {
                let head = frame_head(piece.len());
                if !piece.is_empty() {
                    this.next_piece = Some(piece);
                }
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        this.ended = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&outcome)))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.next_piece.is_none()
    }
}

/// The trailers that report `status`.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only a message that cannot be a header value fails; the code still goes out.
        map.clear();
        let _ = Status::new(status.code(), "").add_header(&mut map);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our framing followed by the data, exactly as prost and tonic would frame the message.
    #[test]
    fn framing_matches_prost_for_every_length_class() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut ours = frame_head(len).to_vec();
            ours.extend_from_slice(&data);
            let message = bs::ReadResponse { data }.encode_to_vec();
            let mut theirs = vec![0u8];
            theirs.extend_from_slice(&(message.len() as u32).to_be_bytes());
            theirs.extend_from_slice(&message);
            assert_eq!(ours, theirs, "piece of {len} bytes");
        }
    }

    #[test]
    fn one_message_takes_exactly_one_uncompressed_message() {
        let request = bs::ReadRequest {
            resource_name: "blobs/abc/1".into(),
            read_offset: 0,
            read_limit: 0,
        }
        .encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
        framed.extend_from_slice(&request);
        let payload = one_message(Bytes::from(framed.clone())).expect("one message");
        assert_eq!(payload.as_ref(), request.as_slice());

        let code = |body: Vec<u8>| {
            one_message(Bytes::from(body))
                .map(|_| ())
                .unwrap_err()
                .code()
        };
        assert_eq!(code(Vec::new()), tonic::Code::Internal, "no message");
        assert_eq!(code(vec![0, 0, 0]), tonic::Code::Internal, "cut header");
        let mut two = framed.clone();
        two.extend_from_slice(&framed);
        assert_eq!(code(two), tonic::Code::Internal, "two messages");
        assert_eq!(
            code(framed[..framed.len() - 1].to_vec()),
            tonic::Code::Internal,
            "cut message"
        );
        let mut compressed = framed;
        compressed[0] = 1;
        assert_eq!(code(compressed), tonic::Code::Unimplemented);
    }

    #[test]
    fn error_trailers_carry_code_and_message() {
        let map = trailers(&Status::data_loss("Blob `x` failed its digest check"));
        let status = Status::from_header_map(&map).expect("a status");
        assert_eq!(status.code(), tonic::Code::DataLoss);
        assert_eq!(status.message(), "Blob `x` failed its digest check");
        let ok = trailers(&Status::ok(""));
        assert_eq!(ok.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    }
}
