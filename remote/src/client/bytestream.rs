//! ByteStream transfers for blobs too large for a batch: reads resume at the offset reached when a
//! transient error cuts the stream; writes restart from zero (QueryWriteStatus is optional for
//! servers, and a restart is always correct).

use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use kiln_cache::{Digest, DigestFunction};
use kiln_graph::remote_tier::BlobSource;
use tonic::Status;

use super::connection::Calls;
use super::retry::retry;

/// Bytes per `WriteRequest`.
const CHUNK: usize = 1 << 20;

/// The digest part of a resource name: the function segment is left out for SHA-256 (servers
/// infer it from the hash length) and present for BLAKE3.
fn digest_path(digest: &Digest) -> String {
    match digest.function {
        DigestFunction::Sha256 => format!("{}/{}", digest.hex(), digest.size),
        DigestFunction::Blake3 => format!("blake3/{}/{}", digest.hex(), digest.size),
    }
}

fn prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// `{instance}/blobs/{function/}{hash}/{size}`.
pub(crate) fn read_name(instance: &str, digest: &Digest) -> String {
    format!("{}blobs/{}", prefix(instance), digest_path(digest))
}

/// `{instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}`.
pub(crate) fn write_name(instance: &str, upload: &str, digest: &Digest) -> String {
    format!(
        "{}uploads/{upload}/blobs/{}",
        prefix(instance),
        digest_path(digest)
    )
}

impl Calls<'_> {
    /// Streams the blob into `file` (unverified: the caller checks the digest).
    pub async fn read_blob(&self, digest: &Digest, file: &mut File) -> Result<(), Status> {
        let written = AtomicU64::new(0);
        let file = Mutex::new(file);
        let name = read_name(self.instance, digest);
        retry(&self.policy.for_size(digest.size), || {
            let mut client = self.clients.bytestream.clone();
            let (written, file, name) = (&written, &file, &name);
            async move {
                let request = ReadRequest {
                    resource_name: name.clone(),
                    read_offset: written.load(Ordering::SeqCst) as i64,
                    read_limit: 0,
                };
                let mut stream = client.read(request).await?.into_inner();
                while let Some(message) = stream.message().await? {
                    let total = written.load(Ordering::SeqCst) + message.data.len() as u64;
                    if total > digest.size {
                        return Err(Status::out_of_range(
                            "the server sent more bytes than the blob has",
                        ));
                    }
                    let mut file = file
                        .lock()
                        .map_err(|_| Status::internal("download file lock poisoned"))?;
                    file.write_all(&message.data)
                        .map_err(|e| Status::internal(format!("cannot write the download: {e}")))?;
                    written.store(total, Ordering::SeqCst);
                }
                Ok(())
            }
        })
        .await
    }

    /// Uploads one blob from memory or a file.
    pub async fn write_blob(&self, digest: &Digest, source: &BlobSource) -> Result<(), Status> {
        let size = digest.size;
        retry(&self.policy.for_size(size), || {
            let mut client = self.clients.bytestream.clone();
            let name = write_name(self.instance, &uuid::Uuid::new_v4().to_string(), digest);
            let chunks = Chunks::open(source, name, size);
            async move {
                let chunks = chunks?;
                let response = client.write(tokio_stream::iter(chunks)).await?.into_inner();
                if response.committed_size != size as i64 && response.committed_size != -1 {
                    return Err(Status::data_loss(format!(
                        "the server committed {} of {size} bytes",
                        response.committed_size
                    )));
                }
                Ok(())
            }
        })
        .await
    }
}

/// The `WriteRequest`s of one upload, read from the source as the stream is sent.
struct Chunks {
    reader: Box<dyn Read + Send>,
    name: Option<String>,
    offset: u64,
    size: u64,
    done: bool,
}

impl Chunks {
    fn open(source: &BlobSource, name: String, size: u64) -> Result<Chunks, Status> {
        let reader: Box<dyn Read + Send> = match source {
            BlobSource::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
            BlobSource::File(path) => Box::new(File::open(path).map_err(|e| {
                Status::failed_precondition(format!("cannot read `{}`: {e}", path.display()))
            })?),
        };
        Ok(Chunks {
            reader,
            name: Some(name),
            offset: 0,
            size,
            done: false,
        })
    }
}

impl Iterator for Chunks {
    type Item = WriteRequest;

    fn next(&mut self) -> Option<WriteRequest> {
        if self.done {
            return None;
        }
        let want = (self.size - self.offset).min(CHUNK as u64) as usize;
        let mut data = vec![0; want];
        // A short or failed read ends the stream without `finish_write`: the server then refuses
        // the upload rather than store a wrong blob.
        if self.reader.read_exact(&mut data).is_err() {
            self.done = true;
            return None;
        }
        let write_offset = self.offset as i64;
        self.offset += want as u64;
        let finish_write = self.offset == self.size;
        self.done = finish_write;
        Some(WriteRequest {
            resource_name: self.name.take().unwrap_or_default(),
            write_offset,
            finish_write,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        let blake3 = Digest::of_bytes(DigestFunction::Blake3, b"abc");
        let sha256 = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        assert_eq!(read_name("", &sha256), format!("blobs/{}/3", sha256.hex()));
        assert_eq!(
            read_name("main", &blake3),
            format!("main/blobs/blake3/{}/3", blake3.hex())
        );
        assert_eq!(
            write_name("a/b", "u-1", &sha256),
            format!("a/b/uploads/u-1/blobs/{}/3", sha256.hex())
        );
    }

    #[test]
    fn chunks_cover_the_blob_and_finish_once() {
        let bytes = vec![7u8; CHUNK * 2 + 5];
        let chunks: Vec<WriteRequest> = Chunks::open(
            &BlobSource::Bytes(bytes.clone()),
            "n".to_string(),
            bytes.len() as u64,
        )
        .unwrap()
        .collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].resource_name, "n");
        assert!(chunks[1].resource_name.is_empty());
        assert_eq!(chunks[2].write_offset, (CHUNK * 2) as i64);
        assert_eq!(
            chunks.iter().map(|c| c.finish_write).collect::<Vec<_>>(),
            [false, false, true]
        );
        let empty: Vec<WriteRequest> = Chunks::open(&BlobSource::Bytes(Vec::new()), "n".into(), 0)
            .unwrap()
            .collect();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].finish_write);
    }
}
