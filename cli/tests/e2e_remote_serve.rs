//! Kiln clients sharing a real `kiln serve` (the binary under test, as a separate process): two
//! checkouts in different directories with separate local caches, builds without the bytes, a blob
//! deleted on the server, and the server going away.

mod harness;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{free_port, Output, Workspace};

const BUILD: &str = r#"
genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< $< > $@")
genrule(name = "c", srcs = [":b"], outs = ["c.txt"], cmd = "wc -c < $< > $@")
"#;

/// A `kiln serve` process on a loopback port; killed when dropped.
struct Serve {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        Serve::start_with(&[], "grpc")
    }

    /// A server with extra `kiln serve` flags, its URL under `scheme`.
    fn start_with(extra: &[&str], scheme: &str) -> Serve {
        let dir = tempfile::tempdir().expect("server dir");
        let port = free_port();
        #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir.path())
            .args(["--max-size", "1G", "--allow-anonymous", "write"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kiln serve");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // `localhost`: the name TLS certificates are issued for.
        Serve {
            child,
            url: format!("{scheme}://localhost:{port}"),
            dir,
        }
    }

    /// Deletes every blob file on the server with exactly this content; returns how many.
    fn delete_blob(&self, content: &str) -> usize {
        delete_files_with(self.dir.path(), content)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delete_files_with(dir: &Path, content: &str) -> usize {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file()
            && std::fs::read(entry.path()).is_ok_and(|b| b == content.as_bytes())
        {
            std::fs::remove_file(entry.path()).expect("delete blob");
            n += 1;
        }
    }
    n
}

fn fixture(unique: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("p/in.txt", &format!("{unique}\n"));
    ws.write("p/BUILD", BUILD);
    ws
}

fn build(ws: &Workspace, url: &str, target: &str) -> Output {
    ws.kiln(&["build", target, "--remote_cache", url])
}

fn count(out: &Output, field: &str) -> u64 {
    out.summary()[field].as_u64().unwrap_or(u64::MAX)
}

fn statuses(out: &Output, label: &str) -> Vec<String> {
    out.events
        .iter()
        .filter(|e| e["type"] == "action" && e["label"] == label)
        .map(|e| e["cache"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn local_cas_has(ws: &Workspace, content: &str) -> bool {
    walkdir::WalkDir::new(ws.cache_dir().join("cas"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == content.as_bytes()))
}

#[test]
fn checkouts_share_kiln_serve_and_download_only_top_level_outputs() {
    let server = Serve::start();
    let first = fixture("serve-shared");
    let out = build(&first, &server.url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 3, "{}", out.stderr);

    // Another directory, another local cache: nothing runs, only c.txt comes down.
    let second = first.copy_to(false);
    let out = build(&second, &server.url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    assert_eq!(count(&out, "remote_hits"), 3);
    assert_eq!(second.read_out("p/c.txt"), first.read_out("p/c.txt"));
    let a = "SERVE-SHARED\n";
    assert!(
        !local_cas_has(&second, a),
        "intermediate a.txt was downloaded"
    );
    assert!(
        !local_cas_has(&second, &a.repeat(2)),
        "intermediate b.txt was downloaded"
    );
    assert!(!second.out_path("p/a.txt").exists());

    // The intermediate b.txt disappears from the server; a build that needs it locally (c
    // changed) recovers by running what produces it.
    assert_eq!(server.delete_blob(&a.repeat(2)), 1);
    let third = first.copy_to(false);
    third.write("p/BUILD", &BUILD.replace("wc -c < $< > $@", "cat $< > $@"));
    let out = build(&third, &server.url, "//p:c");
    out.ok();
    assert_eq!(
        statuses(&out, "//p:b").last().map(String::as_str),
        Some("executed")
    );
    assert_eq!(statuses(&out, "//p:c"), ["executed"]);
    assert_eq!(third.read_out("p/c.txt"), a.repeat(2));
}

#[test]
fn a_warm_local_cache_fills_an_empty_server_unless_uploads_are_off() {
    let first = fixture("serve-warm-local");
    let out = first.kiln(&["build", "//p:c"]);
    out.ok();
    assert_eq!(count(&out, "executed"), 3, "{}", out.stderr);

    // Every action is a local hit; the server has none of them, so they go up.
    let server = Serve::start();
    let out = build(&first, &server.url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    let second = first.copy_to(false);
    let out = build(&second, &server.url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    assert_eq!(count(&out, "remote_hits"), 3);
    assert_eq!(second.read_out("p/c.txt"), first.read_out("p/c.txt"));

    // With uploads off, local hits stay local.
    let empty = Serve::start();
    let out = first.kiln(&[
        "build",
        "//p:c",
        "--remote_cache",
        &empty.url,
        "--remote_upload_local_results=false",
    ]);
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    let third = first.copy_to(false);
    let out = build(&third, &empty.url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 3, "{}", out.stderr);
}

#[test]
fn a_stopped_server_costs_a_warning_not_the_build() {
    let mut server = Serve::start();
    let url = server.url.clone();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let ws = fixture("serve-stopped");
    let out = build(&ws, &url, "//p:c");
    out.ok();
    assert_eq!(count(&out, "executed"), 3);
    assert!(
        out.stderr.contains("WARNING: Remote cache"),
        "{}",
        out.stderr
    );
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    let issuer = Issuer::new(ca_params, &ca_key);
    for (name, file) in [("localhost", "server"), ("client", "client")] {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("write");
    }
}

/// A `grpcs://` cache with a private CA that asks for client certificates: Kiln reaches it with
/// `--tls_certificate` and `--tls_client_certificate`/`--tls_client_key` (a second checkout is
/// all remote hits); without the client certificate it warns and builds locally; TLS flags on a
/// plain-text cache are a command-line error.
#[test]
fn a_tls_cache_with_client_certificates_is_reached_with_bazels_tls_flags() {
    let certs = tempfile::tempdir().expect("certs");
    pki(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let server = Serve::start_with(
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--tls-client-ca",
            &file("ca.pem"),
        ],
        "grpcs",
    );
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    // `//p:c` against `url`, trusting the test CA, with `extra` flags.
    let tls_build = |ws: &Workspace, url: &str, extra: &[&str]| {
        let mut args = vec![
            "build",
            "//p:c",
            "--remote_cache",
            url,
            "--tls_certificate",
            &ca,
        ];
        args.extend_from_slice(extra);
        ws.kiln(&args)
    };
    let identity = [
        "--tls_client_certificate",
        cert.as_str(),
        "--tls_client_key",
        key.as_str(),
    ];
    let first = fixture("serve-tls");
    let out = tls_build(&first, &server.url, &identity);
    out.ok();
    assert!(
        !out.stderr.contains("WARNING: Remote cache"),
        "{}",
        out.stderr
    );
    let second = fixture("serve-tls");
    let out = tls_build(&second, &server.url, &identity);
    out.ok();
    assert_eq!(count(&out, "executed"), 0, "{}", out.stderr);
    assert_eq!(count(&out, "remote_hits"), 3, "{}", out.stderr);

    // No client certificate: the server refuses the handshake; the build stays local.
    let third = fixture("serve-tls-anonymous");
    let out = tls_build(&third, &server.url, &[]);
    out.ok();
    assert_eq!(count(&out, "executed"), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("WARNING: Remote cache"),
        "{}",
        out.stderr
    );

    let out = tls_build(&third, "grpc://localhost:1", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("use `grpcs://host:port`"),
        "{}",
        out.stderr
    );
}

/// Runs `kiln serve` with `extra` flags until it logs "serving", stops it with SIGTERM, and
/// returns its exit status and every stderr line.
fn serve_until_sigterm(extra: &[&str]) -> (std::process::ExitStatus, Vec<String>, u16) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("server dir");
    let port = free_port();
    #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir.path())
        .args(["--allow-anonymous", "write"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kiln serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let serving = line.contains("serving");
                lines.push(line);
                if serving {
                    break;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no \"serving\" line ({e}); stderr so far: {lines:#?}");
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    (status, lines, port)
}

#[test]
fn serve_log_format_json_writes_every_stderr_line_as_a_json_object() {
    let (status, lines, port) = serve_until_sigterm(&["--log-format", "json"]);
    assert!(
        status.success(),
        "kiln serve exited with {status}: {lines:#?}"
    );
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nall: {lines:#?}"));
            assert!(event.is_object(), "{line}");
            assert!(event["level"].is_string(), "no level: {line}");
            assert!(event["timestamp"].is_string(), "no timestamp: {line}");
            assert!(event["fields"]["message"].is_string(), "no message: {line}");
            event
        })
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["fields"]["message"].as_str().unwrap())
        .collect();
    let serving = events
        .iter()
        .find(|e| e["fields"]["message"] == "serving")
        .unwrap_or_else(|| panic!("no serving line: {messages:?}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["fields"]["addr"], format!("127.0.0.1:{port}"));
    assert!(
        messages.contains(&"SIGTERM: finishing in-flight calls"),
        "{messages:?}"
    );
    assert_eq!(messages.last(), Some(&"stopped"), "{messages:?}");
}

#[test]
fn serve_logs_plain_text_not_json_by_default() {
    let (status, lines, port) = serve_until_sigterm(&[]);
    assert!(
        status.success(),
        "kiln serve exited with {status}: {lines:#?}"
    );
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "a JSON line in the default text format: {line}"
        );
    }
    let serving = lines
        .iter()
        .find(|l| l.contains("serving"))
        .expect("serving line");
    assert!(serving.contains("INFO"), "{serving}");
    assert!(serving.contains(&format!("127.0.0.1:{port}")), "{serving}");
    assert!(lines.last().unwrap().contains("stopped"), "{lines:#?}");
}
