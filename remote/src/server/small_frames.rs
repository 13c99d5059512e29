//! Sends a small response in one write: its DATA is cut into pieces below h2's copy threshold.
//!
//! h2 copies a DATA frame of fewer than 256 bytes into its write buffer, where the frames that
//! follow it (the gRPC trailers) join it; a larger frame is kept aside and written with its own
//! `writev`, so a 4 KiB unary response costs two writes, and the client two wake-ups, one for
//! the message and one for the trailers. [`SmallFrames`] wraps a service so that a response
//! message of up to [`SPLIT_UP_TO`] bytes goes out as frames of [`PIECE`] bytes: h2 buffers all
//! of them and the trailers, and writes the response at once. The pieces are slices of the
//! message (no copy); DATA frame boundaries mean nothing to gRPC. Larger messages are unchanged.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

/// Largest piece h2 copies into its write buffer (it chains frames of 256 bytes and more).
const PIECE: usize = 255;
/// Messages up to this size are cut into pieces; h2's write buffer holds 16 KiB.
pub const SPLIT_UP_TO: usize = 8 << 10;

/// A gRPC service whose small responses leave in one write.
#[derive(Clone)]
pub struct SmallFrames<S> {
    inner: S,
}

impl<S> SmallFrames<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        SmallFrames { inner }
    }
}

impl<S: NamedService> NamedService for SmallFrames<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for SmallFrames<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(Pieces {
                    inner: body,
                    rest: Bytes::new(),
                })
            }))
        })
    }
}

/// A body whose small data frames are handed on in [`PIECE`]-byte slices.
struct Pieces {
    inner: Body,
    /// What is left of the message being cut.
    rest: Bytes,
}

impl Pieces {
    fn next_piece(&mut self) -> Frame<Bytes> {
        let piece = self.rest.split_to(self.rest.len().min(PIECE));
        Frame::data(piece)
    }
}

impl HttpBody for Pieces {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.next_piece())));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        match frame.into_data() {
            Ok(mut data) if data.remaining() > PIECE && data.remaining() <= SPLIT_UP_TO => {
                self.rest = data.copy_to_bytes(data.remaining());
                Poll::Ready(Some(Ok(self.next_piece())))
            }
            Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(frames: Vec<Frame<Bytes>>) -> Body {
        let stream = tokio_stream::iter(frames.into_iter().map(Ok::<_, tonic::Status>));
        Body::new(http_body_util::StreamBody::new(stream))
    }

    async fn frames_of(inner: Body) -> Vec<Frame<Bytes>> {
        let mut pieces = Pieces {
            inner,
            rest: Bytes::new(),
        };
        let mut out = Vec::new();
        while let Some(frame) = pieces.frame().await {
            out.push(frame.unwrap());
        }
        out
    }

    fn trailers() -> http::HeaderMap {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        t
    }

    #[tokio::test]
    async fn a_small_message_is_cut_below_the_copy_threshold_and_keeps_its_bytes() {
        let message: Bytes = (0..4101u32).map(|i| i as u8).collect::<Vec<u8>>().into();
        let out = frames_of(body(vec![
            Frame::data(message.clone()),
            Frame::trailers(trailers()),
        ]))
        .await;
        let (data, rest): (Vec<_>, Vec<_>) = out.into_iter().partition(|f| f.is_data());
        assert_eq!(data.len(), 4101usize.div_ceil(PIECE));
        let joined: Vec<u8> = data
            .into_iter()
            .flat_map(|f| {
                let d = f.into_data().unwrap();
                assert!(d.len() <= PIECE);
                d.to_vec()
            })
            .collect();
        assert_eq!(joined, message);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].trailers_ref(), Some(&trailers()));
    }

    #[tokio::test]
    async fn tiny_and_large_messages_pass_unchanged() {
        let tiny = Bytes::from_static(b"short message");
        let large = Bytes::from(vec![7u8; SPLIT_UP_TO + 1]);
        let out = frames_of(body(vec![
            Frame::data(tiny.clone()),
            Frame::data(large.clone()),
            Frame::trailers(trailers()),
        ]))
        .await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].data_ref(), Some(&tiny));
        assert_eq!(out[1].data_ref(), Some(&large));
        assert!(out[2].is_trailers());
    }
}
